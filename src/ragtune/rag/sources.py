"""Numbered sources: the passages an answer is given, grouped by document under one number, with their sections
and the text the claim judge reads (each passage under its headings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragtune.store.text import tokenize
from ragtune.types import Hit, SourceDocument, embedding_text

SECTION_SEPARATOR = " › "
PASSAGE_SEPARATOR = "\n\n"


@dataclass
class Source:
    """One numbered source: a document and the passages of it that were retrieved, in document order."""

    number: int
    parts: list[Hit]  # best first as retrieved; ``hit`` joins them in document order

    @property
    def best(self) -> Hit:
        return self.parts[0]

    @property
    def ordered(self) -> list[Hit]:
        return sorted(self.parts, key=lambda h: (h.meta.chunk_index, h.chunk_id))

    @property
    def hit(self) -> Hit:
        """The source as one hit: its passages joined in document order (the best one's id and metadata)."""
        if len(self.parts) == 1:
            return self.best
        text = PASSAGE_SEPARATOR.join(embedding_text(h.text, h.meta) for h in self.ordered)
        return self.best.model_copy(update={"text": text})

    @property
    def sections(self) -> list[str]:
        found = [section(h) for h in self.ordered]
        return list(dict.fromkeys(s for s in found if s))

    @property
    def context(self) -> str:
        """What the claim judge reads: every passage under its headings, so 'Enterprise plans' frames the
        numbers of a passage headed by it."""
        return PASSAGE_SEPARATOR.join(passage_with_headings(h) for h in self.ordered)

    def document(self, *, snippet: str = "", cited: bool = False) -> SourceDocument:
        pages = sorted({h.meta.page_number for h in self.parts if h.meta.page_number is not None})
        return SourceDocument(
            number=self.number, document_id=self.best.document_id, source=self.best.source, sections=self.sections,
            pages=pages, chunk_ids=[h.chunk_id for h in self.ordered], snippet=snippet or shorten(self.best.text),
            score=round(self.best.score, 6), cited=cited,
        )


def newest_first(sources: Sequence[Source]) -> list[Source]:
    """The sources renumbered newest document first (undated ones after the dated, in their order): for a question
    about how things stand now, where a later message changed what an earlier one said."""
    dated = [s for s in sources if s.best.meta.created_at]
    if len({s.best.meta.created_at for s in dated}) < 2:
        return list(sources)
    ordered = sorted(dated, key=lambda s: s.best.meta.created_at or "", reverse=True)
    ordered += [s for s in sources if not s.best.meta.created_at]
    return [Source(n, s.parts) for n, s in enumerate(ordered, 1)]


def section(hit: Hit) -> str:
    """The heading path of a passage, ' › '-joined ('Expense policy › Hotels'), or its section title."""
    path = [p for p in hit.meta.heading_path if p]
    return SECTION_SEPARATOR.join(path) if path else (hit.meta.section_title or "")


def passage_with_headings(hit: Hit) -> str:
    """A passage as Markdown under its heading path; a first line repeating the last heading is dropped."""
    text = embedding_text(hit.text, hit.meta)
    path = [p for p in hit.meta.heading_path if p]
    if not path:
        return text
    first, _, rest = text.partition("\n")
    if first.strip().lstrip("#").strip() == path[-1].strip():
        text = rest.lstrip("\n")
    headings = "\n".join(f"{'#' * min(level, 6)} {title}" for level, title in enumerate(path, 1))
    return f"{headings}\n\n{text}" if text.strip() else headings


def group_sources(hits: Sequence[Hit], *, max_sources: int | None = None) -> list[Source]:
    """Hits grouped by document, numbered in the order each document first appears (best first)."""
    groups: dict[str, Source] = {}
    for hit in hits:
        key = hit.document_id or hit.source
        if key in groups:
            groups[key].parts.append(hit)
        elif max_sources is None or len(groups) < max_sources:
            groups[key] = Source(len(groups) + 1, [hit])
    return list(groups.values())


def is_heading_only(hit: Hit) -> bool:
    """A passage that holds nothing but its own heading (a title chunk): it cannot support an answer."""
    path = {t for p in hit.meta.heading_path for t in tokenize(p)} | set(tokenize(hit.meta.section_title or ""))
    return not set(tokenize(hit.text)) - path


def shorten(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
