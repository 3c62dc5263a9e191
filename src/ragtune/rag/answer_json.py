"""One JSON vocabulary for answers and hits, shared by the CLI's --json and the server's responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragtune.types import Answer, Hit, SourceDocument

SNIPPET_CHARS = 400

#: What each retriever's score is, for readers of ``score_kind`` (and of the CLI's search legend).
SCORE_KINDS: dict[str, str] = {
    "dbsf": "score fusion of the dense and BM25 rankings: each retriever's scores scaled by their own spread, "
            "(s − mean + 3σ) / 6σ, weighted and summed: about 1.5 for a hit far ahead in both lists (compare ranks, "
            "not values across queries)",
    "rrf": "reciprocal-rank fusion of the dense and BM25 rankings, Σ weight / (rrf_k + rank): about 0.05 for a "
           "first place in one list at the default rrf_k=20 (compare ranks, not values)",
    "cosine": "dense: cosine similarity of the query and chunk embeddings, -1 to 1",
    "bm25": "sparse: BM25 keyword score, unbounded, higher for rarer matching terms",
    "rerank": "the reranker's relevance score for the query and chunk",
}


def score_kind(hit: Hit, mode: str) -> str:
    """What ``hit.score`` measures: 'dbsf' or 'rrf' (fused: hybrid, graph, auto), 'cosine' (dense), 'bm25' (sparse)
    or 'rerank'."""
    if "rerank" in hit.scores:
        return "rerank"
    if hit.fusion:
        return hit.fusion
    return {"hybrid": "rrf", "dense": "cosine", "sparse": "bm25"}.get(mode, "rrf")


def source_json(
    hit: Hit, number: int, *, cited: bool = False, name: str | None = None, document: SourceDocument | None = None,
) -> dict[str, Any]:
    """A numbered source (or search hit): where it is, a snippet and its score. ``name`` is how the document is
    shown (the server passes its path inside the KB, never the server's file path; default: the source URI).
    For an answer's source, ``document`` adds the document's sections and chunks, and its snippet is the passage
    quoted (when cited) or the one closest to the question."""
    found = {
        "number": number, "document_id": hit.document_id, "chunk_id": hit.chunk_id,
        "name": name if name is not None else hit.source, "page_number": hit.meta.page_number,
        "section_title": hit.meta.section_title, "heading_path": hit.meta.heading_path,
        "snippet": hit.text[:SNIPPET_CHARS], "score": round(hit.score, 6), "cited": cited,
    }
    if document is not None:
        found.update(sections=document.sections, chunk_ids=document.chunk_ids,
                     snippet=(document.snippet or hit.text)[:SNIPPET_CHARS])
    return found


def answer_json(answer: Answer, *, name: Callable[[str], str] | None = None) -> dict[str, Any]:
    """An answer as clients see it: ``answer_id`` (what feedback refers to), the verified text, whether it was
    refused, how it was made (``mode``: generative, extractive or refusal), ``sources`` numbered as the text cites
    them (one per document), each marked ``cited``, what verification removed and why, and how the sources were
    retrieved (``retrieval``: mode, queries, notes; for mode auto the router's ``route``)."""
    shown = name or (lambda uri: uri)
    cited = {c.number for c in answer.citations}
    documents: list[SourceDocument | None] = (
        list(answer.documents) if len(answer.documents) == len(answer.sources) else [None] * len(answer.sources))
    return {
        "answer_id": answer.id,
        "answer": answer.answer,
        "refused": answer.refused,
        "grounded": answer.grounded,
        "mode": answer.mode,
        "language": answer.language,
        "query": answer.query,
        "model": answer.model,
        "sources": [source_json(h, i, cited=i in cited, name=shown(h.source), document=d)
                    for i, (h, d) in enumerate(zip(answer.sources, documents, strict=True), 1)],
        "citations": [c.model_dump(exclude={"source"}) | {"name": shown(c.source)} for c in answer.citations],
        "removed_claims": [r.model_dump() for r in answer.removed_claims],
        "removed_citations": [r.model_dump() for r in answer.removed_citations],
        "retrieval": answer.retrieval,
        "timings_ms": answer.timings,
    }
