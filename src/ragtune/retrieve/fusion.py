"""Weighted reciprocal rank fusion of several rankings of ids into one."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

from ragtune.errors import ConfigError

Id = TypeVar("Id", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Id]],
    *,
    weights: Sequence[float] | None = None,
    k: int = 60,
) -> list[tuple[Id, float]]:
    """Fuse rankings with weighted RRF: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks 1-based.

    An id absent from a ranking gets nothing from it, and an id repeated inside one ranking counts
    at its first (best) position only. A ranking with weight 0 is switched off: it adds no score
    and no ids. The result is sorted by score, descending; equal scores are ordered by the id's
    best rank in any contributing ranking, then by where the id first appeared (ranking by ranking,
    top to bottom), so the output is deterministic.

    Raises:
        ConfigError: ``k`` is negative, or ``weights`` has the wrong length, a negative or
            non-finite value, or sums to zero.
    """
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    for i, ranking in enumerate(rankings):
        # A bare list of ids passed as `rankings` would otherwise be fused character by character.
        if isinstance(ranking, str):
            raise ConfigError(
                f"rankings[{i}] is a string; pass a list of rankings, each a list of ids, e.g. [['a', 'b'], ['b', 'c']]"
            )
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ConfigError(
            f"weights has {len(weights)} values but there are {len(rankings)} rankings — give one weight per ranking"
        )
    for i, weight in enumerate(weights):
        if not math.isfinite(weight):
            raise ConfigError(f"weights must be finite numbers, got {weight} at index {i}")
        if weight < 0:
            raise ConfigError(f"weights must be >= 0, got {weight} at index {i}")
    if rankings and sum(weights) == 0:
        raise ConfigError("weights must not sum to zero")

    terms: dict[Id, list[float]] = {}  # insertion order records first appearance
    best_rank: dict[Id, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0:
            continue
        seen: set[Id] = set()
        for rank, doc_id in enumerate(ranking, start=1):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            terms.setdefault(doc_id, []).append(weight / (k + rank))
            if rank < best_rank.get(doc_id, rank + 1):
                best_rank[doc_id] = rank

    # fsum is exactly rounded, so equal contributions summed in a different order give equal scores
    # and ties are decided by the tie-break below, not by floating-point noise.
    scored = [
        (doc_id, math.fsum(parts), best_rank[doc_id], order) for order, (doc_id, parts) in enumerate(terms.items())
    ]
    scored.sort(key=lambda item: (-item[1], item[2], item[3]))
    return [(doc_id, score) for doc_id, score, _, _ in scored]


def document_fusion(
    rankings: Sequence[Sequence[Id]],
    document_of: dict[Id, str],
    *,
    weights: Sequence[float] | None = None,
    k: int = 60,
    document_weight: float = 1.0,
) -> list[tuple[Id, float]]:
    """Weighted RRF of chunk rankings with their documents fused too: ``score(c) = rrf(c) + document_weight ×
    rrf(doc(c))``, where a document's rank in a ranking is the rank of its best chunk there among documents.

    A document that one retriever finds through one chunk and the other through another gets the credit of
    both, which chunk-level RRF gives to neither chunk. ``document_weight`` 0 is plain RRF. Ids without a
    document count as documents of their own. Same validation and tie-breaking as
    :func:`reciprocal_rank_fusion`.
    """
    if not math.isfinite(document_weight) or document_weight < 0:
        raise ConfigError(f"document_weight must be a finite number >= 0, got {document_weight}")
    chunks = reciprocal_rank_fusion(rankings, weights=weights, k=k)
    if document_weight == 0 or not chunks:
        return chunks
    documents: list[list[str]] = []
    for ranking in rankings:
        order: dict[str, None] = {}
        for chunk_id in ranking:
            order.setdefault(document_of.get(chunk_id, f"\0{chunk_id!r}"), None)
        documents.append(list(order))
    by_document = dict(reciprocal_rank_fusion(documents, weights=weights, k=k))
    position = {chunk_id: n for n, (chunk_id, _) in enumerate(chunks)}
    scored = [
        (chunk_id, score + document_weight * by_document.get(document_of.get(chunk_id, f"\0{chunk_id!r}"), 0.0))
        for chunk_id, score in chunks
    ]
    # Ties keep the chunk-level order, itself deterministic.
    scored.sort(key=lambda item: (-item[1], position[item[0]]))
    return scored
