"""PDF parser (PyMuPDF): text blocks in reading order with page numbers, headings found by font size."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ragtune.errors import ParseError
from ragtune.parse.base import HeadingPath, build_document, clean_metadata
from ragtune.types import Block, BlockType, Document

logger = logging.getLogger(__name__)

#: A block counts as a heading when all its text is at least this much larger than the body text...
_HEADING_SIZE_RATIO = 1.15
#: ...and at least this many points larger, so tiny size jitter in small fonts does not create headings.
_HEADING_SIZE_MIN_DELTA = 1.0
#: Longer blocks are paragraphs set in a large font (pull quotes, slides), not headings.
_HEADING_MAX_CHARS = 200
_HEADING_MAX_LINES = 3
#: A complete PDF ends with "%%EOF", give or take trailing junk some writers append.
_EOF_WINDOW = 2048

_PDF_DATE = re.compile(
    r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?\s*(?:([Zz])|([+-])(\d{2})'?(\d{2})?'?)?"
)
_CJK_EDGE = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_LIST_MARK = re.compile(r"^(?:[•●○◦▪■‣·\-–*]|\d{1,3}[.)])\s")


@dataclass
class _TextBlock:
    page_number: int
    text: str
    line_count: int
    sizes: list[tuple[float, int]]  # (font size, characters) of each non-blank span


def parse_pdf(data: bytes, source: str, *, max_pages: int | None = None) -> Document:
    """Parse a PDF into PARAGRAPH and HEADING blocks carrying 1-based page numbers.

    ``max_pages`` stops after that many pages. An encrypted PDF is opened only when it has an empty user
    password; a PDF without any text layer raises ``ParseError`` (it needs OCR).
    """
    if max_pages is not None and max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    import pymupdf

    try:
        pdf = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises FileDataError, EmptyFileError, RuntimeError... for bad input
        raise ParseError(source, "not a valid PDF (file is damaged or not a PDF) — re-export it") from exc
    try:
        return _read(pdf, data, source, max_pages)
    finally:
        pdf.close()


def _read(pdf: Any, data: bytes, source: str, max_pages: int | None) -> Document:
    import pymupdf

    if pdf.needs_pass and not pdf.authenticate(""):
        raise ParseError(source, "PDF is encrypted — provide an unencrypted copy")
    if pdf.is_repaired:
        # MuPDF rebuilds a cut-off file from whatever objects survive, which would quietly index part of it.
        if b"%%EOF" not in data[-_EOF_WINDOW:]:
            raise ParseError(source, "PDF is truncated (incomplete download or copy?) — get a complete copy")
        logger.warning("%s: the PDF is damaged and was repaired; some text may be missing", source)

    page_count = pdf.page_count
    pages = page_count if max_pages is None else min(page_count, max_pages)
    if pages < page_count:
        logger.info("%s: reading the first %d of %d pages (max_pages)", source, pages, page_count)

    text_blocks: list[_TextBlock] = []
    skipped: list[int] = []
    for index in range(pages):
        try:
            page_dict = pdf[index].get_text("dict", sort=True, flags=pymupdf.TEXTFLAGS_TEXT)
        except Exception:  # one damaged page should not cost the rest of the document
            logger.warning("%s: page %d could not be read and is skipped", source, index + 1, exc_info=True)
            skipped.append(index + 1)
            continue
        text_blocks.extend(_page_blocks(page_dict, index + 1))

    if not text_blocks and skipped:
        raise ParseError(source, "no page could be read (file is damaged) — re-export it")
    if not text_blocks:
        raise ParseError(source, "no extractable text (scanned PDF?) — OCR support comes with the 'ocr' extra")

    meta = pdf.metadata or {}
    metadata: dict[str, Any] = {"page_count": page_count, "pages_parsed": pages}
    if pdf.is_repaired:
        metadata["repaired"] = True
    if skipped:
        metadata["skipped_pages"] = skipped
    return build_document(
        _to_blocks(text_blocks),
        source=source,
        source_type="pdf",
        title=clean_metadata(meta.get("title")),
        author=clean_metadata(meta.get("author")),
        created_at=pdf_date_to_iso(meta.get("creationDate")),
        last_modified=pdf_date_to_iso(meta.get("modDate")),
        metadata=metadata,
    )


def _page_blocks(page_dict: dict[str, Any], page_number: int) -> list[_TextBlock]:
    blocks: list[_TextBlock] = []
    for raw in page_dict.get("blocks", []):
        if raw.get("type") != 0:  # images and drawings carry no text
            continue
        lines: list[str] = []
        sizes: list[tuple[float, int]] = []
        for line in raw.get("lines", []):
            spans = line.get("spans", [])
            text = "".join(span.get("text", "") for span in spans).strip()
            if text:
                lines.append(text)
            sizes += [(float(s["size"]), len(s["text"].strip())) for s in spans if s.get("text", "").strip()]
        if lines:
            blocks.append(_TextBlock(page_number, _join_lines(lines), len(lines), sizes))
    return blocks


def _to_blocks(text_blocks: list[_TextBlock]) -> list[Block]:
    body_size = _body_font_size(text_blocks)
    sizes = [_heading_size(block, body_size) for block in text_blocks]
    # The largest heading size is level 1; PDFs rarely have more than a few distinct heading sizes.
    level_of = {
        size: min(rank + 1, 6) for rank, size in enumerate(sorted({s for s in sizes if s is not None}, reverse=True))
    }

    headings = HeadingPath()
    blocks: list[Block] = []
    for text_block, size in zip(text_blocks, sizes, strict=True):
        if size is None:
            blocks.append(
                Block(
                    type=BlockType.PARAGRAPH,
                    text=text_block.text,
                    page_number=text_block.page_number,
                    heading_path=headings.path,
                )
            )
            continue
        level = level_of[size]
        text = " ".join(text_block.text.split())
        blocks.append(
            Block(
                type=BlockType.HEADING,
                text=text,
                level=level,
                page_number=text_block.page_number,
                heading_path=headings.enter(level, text),
            )
        )
    return blocks


def _body_font_size(text_blocks: list[_TextBlock]) -> float:
    """The font size most of the document's characters are set in."""
    weights: Counter[float] = Counter()
    for block in text_blocks:
        for size, chars in block.sizes:
            weights[_rounded(size)] += chars
    return weights.most_common(1)[0][0] if weights else 0.0


def _heading_size(block: _TextBlock, body_size: float) -> float | None:
    """The block's (rounded) font size when it reads as a heading: short, and all of it well above body size."""
    if not block.sizes or block.line_count > _HEADING_MAX_LINES:
        return None
    if len(block.text) > _HEADING_MAX_CHARS or not any(ch.isalpha() for ch in block.text):
        return None
    smallest = min(size for size, _ in block.sizes)
    if smallest >= body_size * _HEADING_SIZE_RATIO and smallest >= body_size + _HEADING_SIZE_MIN_DELTA:
        return _rounded(smallest)
    return None


def _rounded(size: float) -> float:
    """Font sizes to the nearest half point: renderers jitter sizes by fractions of a point."""
    return round(size * 2) / 2


def _join_lines(lines: list[str]) -> str:
    """Join a block's layout lines into flowing text, keeping list items on their own lines.

    Chinese and Japanese text has no spaces between words, so lines meeting at a CJK character join directly;
    a word hyphenated across lines is rejoined.
    """
    out = lines[0]
    for line in lines[1:]:
        if _LIST_MARK.match(line):
            out += "\n" + line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[0].islower():
            out = out[:-1] + line
        elif _CJK_EDGE.match(out[-1]) or _CJK_EDGE.match(line[0]):
            out += line
        else:
            out += " " + line
    return out


def pdf_date_to_iso(value: str | None) -> str | None:
    """Convert a PDF date (``D:20240102030405+01'00'``) to ISO 8601; None when missing or unreadable.

    A date without a time of day stays a date (``2024-01-02``); a time without an offset stays naive.
    """
    if not value:
        return None
    match = _PDF_DATE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zulu, sign, off_h, off_m = match.groups()
    try:
        if hour is None:
            return datetime(int(year), int(month or 1), int(day or 1)).date().isoformat()
        tz = None
        if zulu:
            tz = UTC
        elif sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
            tz = timezone(offset if sign == "+" else -offset)
        moment = datetime(
            int(year), int(month or 1), int(day or 1), int(hour), int(minute or 0), int(second or 0), tzinfo=tz
        )
    except ValueError:
        return None
    return moment.isoformat()
