"""The retrieval pipeline: rewrite → dense ∥ BM25 → weighted RRF → rerank, with per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.embed import Embedder
from ragtune.errors import ConfigError
from ragtune.retrieve.fusion import document_fusion, reciprocal_rank_fusion
from ragtune.retrieve.rerank import Reranker
from ragtune.retrieve.rewrite import REWRITES, QueryRewriter
from ragtune.store.base import ChunkStore
from ragtune.timing import elapsed_ms
from ragtune.types import Hit

MODES: tuple[str, ...] = ("hybrid", "dense", "sparse")


@dataclass
class SearchResult:
    """Hits best first, how long each stage took (milliseconds), the queries retrieved (original first) and
    any fallback taken on the way (a failed rewrite, say)."""

    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class HybridRetriever:
    """The retrieval pipeline: optional query rewrite, dense and BM25 search for every query, weighted RRF,
    then an optional reranker over the best candidates."""

    def __init__(
        self, store: ChunkStore, embedder: Embedder, *, candidates: int = 100, dense_weight: float = 1.0,
        sparse_weight: float = 1.0, rrf_k: int = 60, rewriter: QueryRewriter | None = None, rewrite: str = "none",
        rewrite_weight: float = 0.5, hyde_mix: bool = True, reranker: Reranker | None = None,
        rerank_candidates: int = 50, rerank_fusion: float = 0.0, document_weight: float = 0.0,
    ) -> None:
        if candidates <= 0:
            raise ConfigError("candidates must be greater than 0.")
        if dense_weight < 0 or sparse_weight < 0:
            raise ConfigError("dense_weight and sparse_weight must be >= 0.")
        if dense_weight + sparse_weight == 0:
            raise ConfigError("dense_weight and sparse_weight must not both be zero.")
        if rewrite not in REWRITES:
            raise ConfigError(f"unknown rewrite '{rewrite}' — choose one of: {', '.join(REWRITES)}")
        if rewrite_weight < 0:
            raise ConfigError("rewrite_weight must be >= 0.")
        if rerank_candidates <= 0:
            raise ConfigError("rerank_candidates must be greater than 0.")
        if rerank_fusion < 0:
            raise ConfigError("rerank_fusion must be >= 0.")
        if document_weight < 0:
            raise ConfigError("document_weight must be >= 0.")
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.weights = (dense_weight, sparse_weight)
        self.rrf_k = rrf_k
        self.rewriter = rewriter
        self.rewrite = rewrite
        self.rewrite_weight = rewrite_weight
        self.hyde_mix = hyde_mix
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.rerank_fusion = rerank_fusion
        self.document_weight = document_weight

    def search(
        self, query: str, k: int = 10, *, mode: str = "hybrid", filter: dict[str, Any] | str | None = None,
        candidates: int | None = None, rewrite: str | None = None, rerank: bool | None = None,
    ) -> SearchResult:
        """The ``k`` best chunks for ``query``. Each hit's ``scores`` holds the per-retriever score and rank.

        ``rewrite`` (hyde, multi, stepback, none) and ``rerank`` (False turns the reranker off) override the
        retriever's defaults for this call.
        """
        if mode not in MODES:
            raise ConfigError(f"unknown search mode '{mode}' — choose one of: {', '.join(MODES)}")
        if k <= 0:
            raise ConfigError("k must be greater than 0.")
        if not query.strip():
            raise ConfigError("the query is empty — give some text to search for")
        rewrite = self.rewrite if rewrite is None else rewrite
        if rewrite not in REWRITES:
            raise ConfigError(f"unknown rewrite '{rewrite}' — choose one of: {', '.join(REWRITES)}")
        reranker = self.reranker if rerank is None or rerank else None
        if rerank and reranker is None:
            raise ConfigError("reranking was asked for but no reranker is configured — set rerank, e.g. "
                              "'cross-encoder:PATH' or 'llm'")
        timings: dict[str, float] = {}
        notes: list[str] = []
        queries, passage = self._rewrite(query, rewrite, mode, timings, notes)
        pool = max(candidates or self.candidates, k)
        lists, weights, detail = self._rankings(queries, passage, mode, pool, filter, timings)
        t = time.perf_counter()
        if len(lists) > 1:
            ids = [[i for i, _ in ranking] for ranking in lists]
            if self.document_weight > 0:
                document_of = self.store.document_ids(list({i for ranking in ids for i in ranking}))
                fused = document_fusion(ids, document_of, weights=weights, k=self.rrf_k,
                                        document_weight=self.document_weight)
            else:
                fused = reciprocal_rank_fusion(ids, weights=weights, k=self.rrf_k)
        else:
            fused = lists[0]
        depth = max(k, self.rerank_candidates) if reranker is not None else k
        top = fused[:depth]
        timings["fuse"] = elapsed_ms(t, 3)
        t = time.perf_counter()
        records = self.store.get([i for i, _ in top])
        hits = []
        for chunk_id, score in top:
            hit = records.get(chunk_id)
            if hit is None:  # deleted between search and fetch
                continue
            hit.score = float(score)
            for name, ranks in detail.items():
                if chunk_id in ranks:
                    hit.scores[f"{name}_rank"] = float(ranks[chunk_id][0])
                    hit.scores[name] = float(ranks[chunk_id][1])
            hits.append(hit)
        timings["fetch"] = elapsed_ms(t, 3)
        if reranker is not None and hits:
            t = time.perf_counter()
            hits = self._rerank(reranker, query, hits)[:k]
            timings["rerank"] = elapsed_ms(t, 3)
        timings["total"] = round(sum(timings.values()), 3)
        return SearchResult(hits[:k], timings, [q for q, _ in queries], notes)

    def _rewrite(
        self, query: str, rewrite: str, mode: str, timings: dict[str, float], notes: list[str]
    ) -> tuple[list[tuple[str, float]], str]:
        """The (query, weight) pairs to retrieve, original first, and a HyDE passage ('' when none)."""
        queries = [(query, 1.0)]
        if rewrite == "none":
            return queries, ""
        if self.rewriter is None:
            raise ConfigError(f"rewrite '{rewrite}' needs an LLM, and this retriever has none")
        if rewrite == "hyde" and mode == "sparse":
            notes.append("hyde rewrites the dense query only; sparse search used the original query")
            return queries, ""
        t = time.perf_counter()
        result = self.rewriter.rewrite(query, rewrite)
        timings["rewrite"] = elapsed_ms(t, 3)
        if result.error:
            notes.append(f"{rewrite}: {result.error}; searched with the original query")
        queries += [(q, self.rewrite_weight) for q in result.queries]
        return queries, result.passage

    def _rankings(
        self, queries: list[tuple[str, float]], passage: str, mode: str, pool: int,
        filter: dict[str, Any] | str | None, timings: dict[str, float],
    ) -> tuple[list[list[tuple[int, float]]], list[float], dict[str, dict[int, tuple[int, float]]]]:
        """One dense and/or one sparse ranking per query with its fusion weight, and the original query's
        ranks and scores per retriever (for each hit's ``scores``)."""
        lists: list[list[tuple[int, float]]] = []
        weights: list[float] = []
        detail: dict[str, dict[int, tuple[int, float]]] = {}
        dense_w, sparse_w = self.weights
        if mode in ("dense", "hybrid"):
            t = time.perf_counter()
            vectors = self.embedder.encode_queries([q for q, _ in queries])
            if passage:
                hypothetical = self.embedder.encode_documents([passage])[0]
                # HyDE: the passage's embedding, averaged with the query's unless hyde_mix is off.
                mixed = vectors[0] + hypothetical if self.hyde_mix else hypothetical
                vectors[0] = mixed / max(float(np.linalg.norm(mixed)), 1e-12)
            timings["embed"] = elapsed_ms(t, 3)
            t = time.perf_counter()
            for n, ((_, weight), vector) in enumerate(zip(queries, vectors, strict=True)):
                ranking = self.store.dense_search(vector, pool, filter)
                lists.append(ranking)
                weights.append(dense_w * weight)
                if n == 0:
                    detail["dense"] = {cid: (rank, score) for rank, (cid, score) in enumerate(ranking, 1)}
            timings["dense"] = elapsed_ms(t, 3)
        if mode in ("sparse", "hybrid"):
            t = time.perf_counter()
            for n, (text, weight) in enumerate(queries):
                ranking = self.store.sparse_search(text, pool, filter)
                lists.append(ranking)
                weights.append(sparse_w * weight)
                if n == 0:
                    detail["sparse"] = {cid: (rank, score) for rank, (cid, score) in enumerate(ranking, 1)}
            timings["sparse"] = elapsed_ms(t, 3)
        return lists, weights, detail

    def _rerank(self, reranker: Reranker, query: str, hits: list[Hit]) -> list[Hit]:
        """Rerank the first ``rerank_candidates`` hits; the rest keep their first-stage order after them.
        With ``rerank_fusion`` > 0 the reranker's order is fused with the first stage's by weighted RRF."""
        head, tail = hits[: self.rerank_candidates], hits[self.rerank_candidates :]
        first_stage = [h.chunk_id for h in head]
        ranked = reranker.rerank(query, head)
        if self.rerank_fusion > 0:
            by_id = {h.chunk_id: h for h in ranked}
            order = reciprocal_rank_fusion(
                [[h.chunk_id for h in ranked], first_stage], weights=(1.0, self.rerank_fusion), k=self.rrf_k
            )
            ranked = [by_id[cid] for cid, _ in order]
        return ranked + tail

