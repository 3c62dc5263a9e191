"""Retrieval: query rewriting, rank fusion, the hybrid retriever and reranking."""

from ragtune.retrieve.fusion import reciprocal_rank_fusion
from ragtune.retrieve.rerank import CrossEncoderReranker, LLMReranker, Reranker, parse_rerank_spec
from ragtune.retrieve.retriever import MODES, HybridRetriever, SearchResult
from ragtune.retrieve.rewrite import REWRITES, QueryRewriter

__all__ = [
    "MODES",
    "REWRITES",
    "CrossEncoderReranker",
    "HybridRetriever",
    "LLMReranker",
    "QueryRewriter",
    "Reranker",
    "SearchResult",
    "parse_rerank_spec",
    "reciprocal_rank_fusion",
]
