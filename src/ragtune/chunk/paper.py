"""Scientific-paper chunking: sections (Abstract, 1 Introduction, 2.1 Setup, 参考文献, ...) are never mixed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ragtune.chunk.recursive import RecursiveChunker, Span
from ragtune.tokens import TokenCounter
from ragtune.types import BlockType, Chunk, Document

__all__ = ["PaperChunker", "looks_like_paper", "paper_sections"]

# Section names that head a section even without a number. Words such as "Model", "Method" or 方法 also
# label table columns and figure panels in PDF text, so those count only as numbered headings.
_SECTION_NAMES = (
    r"abstract|introduction|background|related\s+works?|methods|methodology|experiments|results"
    r"|results\s+and\s+discussion|discussion|limitations|conclusions?(?:\s+and\s+future\s+work)?"
    r"|acknowledge?ments?|references|bibliography|appendix(?:\s+[A-Z])?|appendices|supplementary\s+materials?"
)
_ZH_SECTION_NAMES = r"摘\s*要|引\s*言|前\s*言|绪\s*论|相关工作|结\s*论|结论与展望|参考文献|致\s*谢|附\s*录"
_NUMBER = r"(?P<number>\d{1,2}(?:\.\d{1,2}){0,3}|[IVX]{1,5}|[一二三四五六七八九十]{1,3})"
_AFTER_NUMBER = r"(?:[.、．][ \t]*|[ \t]+)"
# "Abstract", "1 Introduction", "2. Related Work", "IV. RESULTS", "一、引言", "5 结论" — alone on a line.
_NAMED = re.compile(
    rf"[ \t]*(?:{_NUMBER}{_AFTER_NUMBER})?(?P<title>(?i:{_SECTION_NAMES})|{_ZH_SECTION_NAMES})[ \t]*[:：]?[ \t]*$"
)
# An abstract that begins on its heading's line: "Abstract—We propose ...", "摘要：本文提出 ...".
_INLINE_ABSTRACT = re.compile(r"[ \t]*(?P<title>Abstract|ABSTRACT|摘\s*要)[ \t]*[—:：.\-–][ \t]*\S")
# Other numbered headings: "3 Proposed Model", "2.1 Training setup", "III. PROPOSED METHOD", "2.1 实验设置".
_NUMBERED = re.compile(
    r"[ \t]*(?P<number>\d{1,2}(?:\.\d{1,2}){0,3})\.?[ \t]+(?P<title>[A-Z][^\n]{1,80}?)[ \t]*$"
    r"|[ \t]*(?P<roman>[IVX]{1,5})\.[ \t]+(?P<caps>[A-Z][A-Z0-9 ,:&\-]{2,80}?)[ \t]*$"
    rf"|[ \t]*(?P<zh_number>\d{{1,2}}(?:\.\d{{1,2}}){{0,3}}|[一二三四五六七八九十]{{1,3}}){_AFTER_NUMBER}"
    r"(?P<zh_title>[\u4e00-\u9fff][^\n。，；！？]{0,30}?)[ \t]*$"
)
_MAX_TITLE_WORDS = 12
_ROMAN = {"I": 1, "V": 5, "X": 10}
_ZH_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


@dataclass(frozen=True)
class _Heading:
    start: int
    title: str
    level: int
    number: tuple[int, ...] | None


class PaperChunker:
    """Splits a paper at its section headings and each section recursively within the token budget.

    The parser's heading blocks are used when it found at least two (Markdown, HTML, DOCX); otherwise the
    headings are recognised in the text lines, as PDF text usually has none: known section names, numbered
    headings whose numbers follow on from the previous one (1, 2, 2.1, 2.2, 3 ...), Roman-numeral headings
    and the Chinese 摘要/引言/结论/参考文献. Chunks carry the section in ``section_title`` and
    ``heading_path`` ("2 Method" > "2.1 Setup").
    """

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)

    def split(self, document: Document) -> list[Chunk]:
        sections, metadata = paper_sections(document)
        return self._recursive.split_sections(document, sections, metadata)


def paper_sections(document: Document) -> tuple[list[Span], list[dict[str, Any]]]:
    """Spans that tile the text, one per section, and the ChunkMeta fields of each."""
    text = document.text
    heading_blocks = [b for b in document.blocks if b.type == BlockType.HEADING]
    if len(heading_blocks) >= 2:
        # The parser already knows the structure and each block's heading path; sections only cut the text.
        sections = _tile(sorted({0, *(b.start for b in heading_blocks)}), len(text))
        return sections, [{} for _ in sections]
    headings = list(_line_headings(text))
    bounds = [0] + [h.start for h in headings if h.start > 0]
    sections = _tile(bounds, len(text))
    metadata: list[dict[str, Any]] = []
    stack: list[tuple[int, str]] = []
    by_start = {h.start: h for h in headings}
    for start, _ in sections:
        heading = by_start.get(start)
        if heading is None:
            metadata.append({})  # the title and author lines before the first section
            continue
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        stack.append((heading.level, heading.title))
        path = [title for _, title in stack]
        metadata.append({"heading_path": path, "section_title": path[-1]})
    return sections, metadata


def looks_like_paper(text: str) -> bool:
    """True when the text has an Abstract (摘要) and an Introduction (引言) or References (参考文献) section."""
    titles = {_canonical(h.title) for h in _line_headings(text)}
    return "abstract" in titles and bool(titles & {"introduction", "references"})


def _tile(bounds: list[int], length: int) -> list[Span]:
    return [(s, e) for s, e in zip(bounds, [*bounds[1:], length], strict=True) if s < e]


def _line_headings(text: str) -> Iterator[_Heading]:
    last: tuple[int, ...] | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        end = pos + len(line.rstrip("\r\n"))
        heading = _heading_at(text, pos, end, last)
        if heading is not None:
            if heading.number is not None:
                last = heading.number
            yield heading
        pos += len(line)


def _heading_at(text: str, start: int, end: int, last: tuple[int, ...] | None) -> _Heading | None:
    line = " ".join(text[start:end].split())
    named = _NAMED.match(text, start, end) or _INLINE_ABSTRACT.match(text, start, end)
    if named:
        raw = named.groupdict().get("number")
        number = _parse_number(raw) if raw else None
        title = line if named.re is _NAMED else " ".join(named.group("title").split())
        return _Heading(start, title, len(number) if number else 1, number)
    numbered = _NUMBERED.match(text, start, end)
    if not numbered:
        return None
    title = numbered.group("title") or numbered.group("caps") or numbered.group("zh_title")
    number = _parse_number(numbered.group("number") or numbered.group("roman") or numbered.group("zh_number"))
    # A numbered line is a heading only when it reads like a title and continues the numbering; this keeps
    # numbered list items, table rows and wrapped sentences that start with a number out.
    if len(title.split()) > _MAX_TITLE_WORDS or title.rstrip()[-1] in ".,;:" or not _follows(last, number):
        return None
    return _Heading(start, line, len(number), number)


def _follows(last: tuple[int, ...] | None, number: tuple[int, ...]) -> bool:
    if last is None:
        return number in ((1,), (1, 1))
    candidates = {(*last, 1), (last[0] + 1,)}
    for depth in range(1, len(last)):
        candidates.add((*last[:depth], last[depth] + 1))
    return number in candidates


def _parse_number(raw: str) -> tuple[int, ...]:
    if raw[0].isdigit():
        return tuple(int(part) for part in raw.split("."))
    if raw[0] in _ROMAN:
        values = [_ROMAN[ch] for ch in raw]
        return (sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values)),)
    if len(raw) == 1:
        return (_ZH_DIGITS[raw],)
    # 十一 = 11, 二十 = 20, 二十三 = 23
    tens, _, ones = raw.partition("十")
    return ((_ZH_DIGITS[tens] if tens else 1) * 10 + (_ZH_DIGITS[ones] if ones else 0),)


def _canonical(title: str) -> str:
    words = re.sub(r"^[\dIVX一二三四五六七八九十.、．\s]+(?=\S)", "", title).replace(" ", "").lower()
    for key, names in (("abstract", ("abstract", "摘要")), ("introduction", ("introduction", "引言", "前言", "绪论")),
                       ("references", ("references", "bibliography", "参考文献"))):
        if words.startswith(names):
            return key
    return words
