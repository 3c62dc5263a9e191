"""Context assembly: de-duplicate hits and pack the best ones into the model's token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragtune.rag.citations import terms
from ragtune.text import split_sentences
from ragtune.types import Hit

# Tokens the "[n] title" header of each source costs in the prompt, roughly.
SOURCE_OVERHEAD = 12


def dedupe(hits: Sequence[Hit], *, max_similarity: float = 0.9) -> list[Hit]:
    """Drop hits that repeat an earlier (better) hit: same text, or nearly the same terms (overlapping chunks)."""
    kept: list[Hit] = []
    kept_terms: list[frozenset[str]] = []
    for hit in hits:
        words = terms(hit.text)
        duplicate = any(
            (words == other) or (words and other and len(words & other) / len(words | other) >= max_similarity)
            for other in kept_terms
        )
        if not duplicate:
            kept.append(hit)
            kept_terms.append(words)
    return kept


def pack(
    hits: Sequence[Hit], budget: int, count_tokens: Callable[[str], int], *, max_sources: int = 8,
    min_tokens: int = 24,
) -> list[Hit]:
    """Best hits first, each whole if it fits; otherwise cut at the last sentence end that fits (never
    mid-sentence). Hits too big to contribute even one sentence are skipped for smaller ones."""
    packed: list[Hit] = []
    remaining = budget
    for hit in hits:
        if len(packed) >= max_sources or remaining < min_tokens:
            break
        header = count_tokens(hit.meta.table_header) if hit.meta.table_header else 0
        cost = count_tokens(hit.text) + header + SOURCE_OVERHEAD
        if cost <= remaining:
            packed.append(hit)
            remaining -= cost
            continue
        text = _fit_sentences(hit.text, remaining - SOURCE_OVERHEAD - header, count_tokens)
        if text:
            packed.append(hit.model_copy(update={"text": text}))
            remaining -= count_tokens(text) + header + SOURCE_OVERHEAD
    return packed


def _fit_sentences(text: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    if budget <= 0:
        return ""
    ends = [end for _, end in split_sentences(text, line_breaks=True)]
    best = ""
    for end in ends:
        candidate = text[:end].rstrip()
        if not candidate:
            continue
        if count_tokens(candidate) > budget:
            break
        best = candidate
    return best
