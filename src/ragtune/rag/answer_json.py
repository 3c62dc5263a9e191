"""One JSON vocabulary for answers and hits, shared by the CLI's --json and the server's responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragtune.types import Answer, Hit

SNIPPET_CHARS = 400

#: What each retriever's score is, for readers of ``score_kind`` (and of the CLI's search legend).
SCORE_KINDS: dict[str, str] = {
    "rrf": "reciprocal-rank fusion of the dense and BM25 rankings, Σ weight / (rrf_k + rank): about 0.016 for a "
           "first place in one list at rrf_k=60 (compare ranks, not values)",
    "cosine": "dense: cosine similarity of the query and chunk embeddings, -1 to 1",
    "bm25": "sparse: BM25 keyword score, unbounded, higher for rarer matching terms",
    "rerank": "the reranker's relevance score for the query and chunk",
}


def score_kind(hit: Hit, mode: str) -> str:
    """What ``hit.score`` measures: 'rrf' (hybrid), 'cosine' (dense), 'bm25' (sparse) or 'rerank'."""
    if "rerank" in hit.scores:
        return "rerank"
    return {"hybrid": "rrf", "dense": "cosine", "sparse": "bm25"}.get(mode, "rrf")


def source_json(hit: Hit, number: int, *, cited: bool = False, name: str | None = None) -> dict[str, Any]:
    """A numbered source (or search hit): where it is, a snippet and its score. ``name`` is how the document is
    shown (the server passes its path inside the KB, never the server's file path; default: the source URI)."""
    return {
        "number": number, "document_id": hit.document_id, "chunk_id": hit.chunk_id,
        "name": name if name is not None else hit.source, "page_number": hit.meta.page_number,
        "section_title": hit.meta.section_title, "heading_path": hit.meta.heading_path,
        "snippet": hit.text[:SNIPPET_CHARS], "score": round(hit.score, 6), "cited": cited,
    }


def answer_json(answer: Answer, *, name: Callable[[str], str] | None = None) -> dict[str, Any]:
    """An answer as clients see it: ``answer_id`` (what feedback refers to), the verified text, whether it was
    refused, and ``sources`` numbered as the text cites them, each marked ``cited``."""
    shown = name or (lambda uri: uri)
    cited = {c.number for c in answer.citations}
    return {
        "answer_id": answer.id,
        "answer": answer.answer,
        "refused": answer.refused,
        "grounded": answer.grounded,
        "language": answer.language,
        "query": answer.query,
        "model": answer.model,
        "sources": [source_json(h, i, cited=i in cited, name=shown(h.source)) for i, h in enumerate(answer.sources, 1)],
        "citations": [c.model_dump(exclude={"source"}) | {"name": shown(c.source)} for c in answer.citations],
        "removed_citations": [r.model_dump() for r in answer.removed_citations],
        "timings_ms": answer.timings,
    }
