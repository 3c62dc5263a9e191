"""Retrieval: rank fusion and the hybrid retriever."""

from ragtune.retrieve.fusion import reciprocal_rank_fusion
from ragtune.retrieve.retriever import MODES, HybridRetriever, SearchResult

__all__ = ["MODES", "HybridRetriever", "SearchResult", "reciprocal_rank_fusion"]
