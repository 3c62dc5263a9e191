"""Legal chunking: one article or clause per chunk (第X条, Article N, Section N, § N, Clause N) under its chapter."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ragtune.chunk.recursive import RecursiveChunker, Span
from ragtune.tokens import TokenCounter
from ragtune.types import Chunk, Document

__all__ = ["LegalChunker", "count_clause_markers", "legal_sections"]

_NUMERAL = r"[零〇一二两三四五六七八九十百千万\d０-９]+"
_SPACE = r"[ \t\u3000]"
# 第十二条, 第120条, 第一百二十条之一 (an article inserted by amendment keeps its number plus 之一).
_ZH_CLAUSE = re.compile(rf"{_SPACE}*(第{_SPACE}*{_NUMERAL}{_SPACE}*条(?:之[一二三四五六七八九十]+)?)")
# A chapter-level heading alone on its line: 第一编 / 第二章 总则 / 第三节 合同的订立.
_ZH_HEADING = re.compile(rf"{_SPACE}*(第{_SPACE}*{_NUMERAL}{_SPACE}*([编章节]))(?:{_SPACE}+[^\n]{{0,40}})?{_SPACE}*$")
_ZH_HEADING_RANK = {"编": 0, "章": 1, "节": 2}
# What follows 第X条 when it is a reference inside a sentence that happens to start a line:
# 第三条规定的, 第三条所称, 第三条至第五条, 第三条、第四条, 第三条第二款.
_ZH_REFERENCE_FOLLOWERS = ("规定", "的", "所", "至", "和", "及", "或", "、", "，", ",", "第", "款", "项", "中", "以")
_EN_CLAUSE = re.compile(
    r"[ \t]*(?:(?P<article>Article|ARTICLE|Art\.)[ \t]+(?P<article_no>\d+[A-Za-z]?|[IVXLC]+\b)"
    r"|(?P<section>Section|SECTION|Sec\.)[ \t]+(?P<section_no>\d+(?:\.\d+)*[A-Za-z]?|[IVXLC]+\b)"
    r"|(?P<paragraph>§§?)[ \t]*(?P<paragraph_no>\d+(?:\.\d+)*[a-z]?)"
    r"|(?P<clause>Clause|CLAUSE)[ \t]+(?P<clause_no>\d+(?:\.\d+)*[A-Za-z]?))"
)
_EN_HEADING = re.compile(
    r"[ \t]*(?P<kind>PART|Part|TITLE|Title|CHAPTER|Chapter)[ \t]+(?:[IVXLC]+|\d+|[A-Z][A-Za-z]*)\b[^\n]{0,80}$"
)
_EN_HEADING_RANK = {"part": 0, "title": 0, "chapter": 1}
# After "Article 5" a real heading has nothing, punctuation, or a capitalised title; a lower-case word
# ("Article 3 of this Act", "Section 2 applies") means a reference that a line break put at a line start.
_EN_ACCEPTED_FOLLOWER = re.compile(r"[ \t]*(?:$|[.:\-—–)])|[ \t]+[A-Z0-9\"“'(\[\u3400-\u9fff]")
# A marker whose whole body is a short title line becomes a heading for the clauses under it
# ("ARTICLE II\nOFFICERS\nSection 2.1 ...").
_TITLE_ONLY_CHARS = 80
_TITLE_RANK = 3
_SENTENCE_PUNCTUATION = re.compile(r"[.;:。；：，,]")


@dataclass(frozen=True)
class _Marker:
    start: int
    line_end: int
    label: str
    is_heading: bool
    rank: int = _TITLE_RANK
    family: str = ""
    #: Where the marker itself ("Article 5") ends and its title or text begins.
    marker_end: int = 0


class LegalChunker:
    """One chunk per article or clause, with its id in ``legal_clause_id`` and its chapters in ``heading_path``.

    Articles start at a line that begins with 第X条 (Chinese or Arabic numerals), Article N, Section N,
    § N or Clause N; a mention inside a sentence ("as defined in Article 3") never starts one. Chapter,
    part and section headings (第X章/编/节, Chapter, Part, Title) become the heading path. An article longer
    than the budget is split into pieces that all keep its id; text before the first article is a
    preamble with no clause id.
    """

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)

    def split(self, document: Document) -> list[Chunk]:
        sections, metadata = legal_sections(document.text)
        return self._recursive.split_sections(document, sections, metadata)


def count_clause_markers(text: str, limit: int | None = None) -> int:
    """How many lines of ``text`` start an article or clause (stops counting at ``limit``)."""
    count = 0
    for marker in _markers(text):
        if not marker.is_heading:
            count += 1
            if limit is not None and count >= limit:
                break
    return count


def legal_sections(text: str) -> tuple[list[Span], list[dict[str, Any]]]:
    """Spans that tile ``text``, one per article (its chapter headings included), and their ChunkMeta fields."""
    markers = _promote_titles(text, list(_markers(text)))
    sections: list[Span] = []
    metadata: list[dict[str, Any]] = []
    headings: list[tuple[int, str]] = []
    start = 0
    clause: str | None = None
    previous: _Marker | None = None

    def close(end: int) -> None:
        if end > start and text[start:end].strip():
            sections.append((start, end))
            path = [h for _, h in headings] + ([clause] if clause else [])
            metadata.append(
                {"legal_clause_id": clause, "heading_path": path, "section_title": path[-1]} if path else {}
            )

    for marker in markers:
        # Headings directly above an article open that article's chunk instead of making one of their own.
        continues = previous is not None and previous.is_heading and not text[previous.line_end : marker.start].strip()
        if not continues:
            close(marker.start)
            start = marker.start
            clause = None
        if marker.is_heading:
            while headings and headings[-1][0] >= marker.rank:
                headings.pop()
            headings.append((marker.rank, marker.label))
        else:
            clause = marker.label
        previous = marker
    close(len(text))
    return sections, metadata


def _markers(text: str) -> Iterator[_Marker]:
    pos = 0
    for line in text.splitlines(keepends=True):
        line_end = pos + len(line.rstrip("\r\n"))
        marker = _line_marker(text, pos, line_end)
        if marker is not None:
            yield marker
        pos += len(line)


def _line_marker(text: str, start: int, end: int) -> _Marker | None:
    heading = _ZH_HEADING.match(text, start, end)
    if heading:
        label = " ".join(text[heading.start(1) : end].split())
        return _Marker(start, end, label, True, _ZH_HEADING_RANK[heading.group(2)])
    heading = _EN_HEADING.match(text, start, end)
    if heading:
        label = " ".join(text[heading.start("kind") : end].split())
        return _Marker(start, end, label, True, _EN_HEADING_RANK[heading.group("kind").lower()])
    clause = _ZH_CLAUSE.match(text, start, end)
    if clause:
        rest = text[clause.end() : end]
        if rest.startswith(_ZH_REFERENCE_FOLLOWERS):
            return None
        label = re.sub(rf"{_SPACE}+", "", clause.group(1))
        return _Marker(start, end, label, False, family="条", marker_end=clause.end())
    clause = _EN_CLAUSE.match(text, start, end)
    if clause and _EN_ACCEPTED_FOLLOWER.match(text, clause.end(), end):
        family = next(name for name in ("article", "section", "paragraph", "clause") if clause.group(name))
        number = clause.group(f"{family}_no")
        word = {"article": "Article", "section": "Section", "paragraph": "§", "clause": "Clause"}[family]
        return _Marker(start, end, f"{word} {number}", False, family=family, marker_end=clause.end())
    return None


def _promote_titles(text: str, markers: list[_Marker]) -> list[_Marker]:
    """Turn a clause marker into a heading when its body is just a title and a clause of another kind follows."""
    out: list[_Marker] = []
    for marker, following in zip(markers, [*markers[1:], None], strict=False):
        title = text[marker.marker_end : following.start].strip().lstrip(".:-—–) ") if following else ""
        if (
            following is not None and not marker.is_heading and not following.is_heading
            and following.family != marker.family
            and len(title) <= _TITLE_ONLY_CHARS and not _SENTENCE_PUNCTUATION.search(title)
        ):
            label = " ".join(text[marker.start : following.start].split())
            marker = _Marker(marker.start, following.start, label, True)
        out.append(marker)
    return out
