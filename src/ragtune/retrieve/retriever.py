"""The retrieval pipeline: dense ∥ BM25, fused by weighted RRF, with per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ragtune.embed import Embedder
from ragtune.errors import ConfigError
from ragtune.retrieve.fusion import reciprocal_rank_fusion
from ragtune.store.local import LocalStore
from ragtune.types import Hit

Mode = Literal["hybrid", "dense", "sparse"]
MODES: tuple[str, ...] = ("hybrid", "dense", "sparse")


@dataclass
class SearchResult:
    """Hits best first, plus how long each stage took (milliseconds)."""

    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)


class HybridRetriever:
    """Runs dense and sparse search over a store and fuses their rankings with weighted RRF."""

    def __init__(
        self, store: LocalStore, embedder: Embedder, *, candidates: int = 100, dense_weight: float = 1.0,
        sparse_weight: float = 1.0, rrf_k: int = 60,
    ) -> None:
        if candidates <= 0:
            raise ConfigError("candidates must be greater than 0.")
        if dense_weight < 0 or sparse_weight < 0:
            raise ConfigError("dense_weight and sparse_weight must be >= 0.")
        if dense_weight + sparse_weight == 0:
            raise ConfigError("dense_weight and sparse_weight must not both be zero.")
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.weights = (dense_weight, sparse_weight)
        self.rrf_k = rrf_k

    def search(
        self, query: str, k: int = 10, *, mode: str = "hybrid", filter: dict[str, Any] | str | None = None,
        candidates: int | None = None,
    ) -> SearchResult:
        """The ``k`` best chunks for ``query``. Each hit's ``scores`` holds the per-retriever score and rank."""
        if mode not in MODES:
            raise ConfigError(f"unknown search mode '{mode}' — choose one of: {', '.join(MODES)}")
        if k <= 0:
            raise ConfigError("k must be greater than 0.")
        if not query.strip():
            raise ConfigError("the query is empty — give some text to search for")
        timings: dict[str, float] = {}
        pool = max(candidates or self.candidates, k)
        rankings: dict[str, list[tuple[int, float]]] = {}
        if mode in ("dense", "hybrid"):
            t = time.perf_counter()
            vector = self.embedder.encode_queries([query])[0]
            timings["embed"] = _ms(t)
            t = time.perf_counter()
            rankings["dense"] = self.store.dense_search(vector, pool, filter)
            timings["dense"] = _ms(t)
        if mode in ("sparse", "hybrid"):
            t = time.perf_counter()
            rankings["sparse"] = self.store.sparse_search(query, pool, filter)
            timings["sparse"] = _ms(t)
        t = time.perf_counter()
        if mode == "hybrid":
            fused = reciprocal_rank_fusion(
                [[i for i, _ in rankings["dense"]], [i for i, _ in rankings["sparse"]]],
                weights=self.weights, k=self.rrf_k,
            )
        else:
            fused = rankings[mode]
        top = fused[:k]
        timings["fuse"] = _ms(t)
        t = time.perf_counter()
        records = self.store.get([i for i, _ in top])
        detail = {name: {cid: (rank, score) for rank, (cid, score) in enumerate(ranking, 1)}
                  for name, ranking in rankings.items()}
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
        timings["fetch"] = _ms(t)
        timings["total"] = round(sum(timings.values()), 3)
        return SearchResult(hits, timings)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
