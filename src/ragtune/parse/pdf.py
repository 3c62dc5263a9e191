"""PDF parser (PyMuPDF): text, tables and OCR'd scans as typed blocks in reading order, with page numbers."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ragtune.errors import ParseError
from ragtune.parse.blocks import HeadingPath, build_document, clean_metadata, collapse_whitespace, markdown_table
from ragtune.parse.ocr import join_words
from ragtune.parse.options import ParseOptions, current_options
from ragtune.text import CJK_WIDE_RE
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
#: A page with fewer visible characters than this, and images over this share of its area, is a scan: a
#: scanner's text layer is at most a stamp or a page number.
_SCAN_MAX_CHARS = 20
_SCAN_MIN_IMAGE_AREA = 0.25
#: Rendering an oversized page (posters, engineering drawings) at full OCR resolution would take gigabytes.
_OCR_MAX_PIXELS = 40_000_000
#: A detected table is kept only when at least this share of its cells has text; sparser grids are layout
#: boxes (forms, framed notes) and read better as text.
_TABLE_MIN_FILLED = 0.5
#: How far (points) a "Table 3" line may sit above or below a table to be its caption.
_CAPTION_MAX_GAP = 36.0
#: Overlap (points) tolerated between a caption and its table: renderers let descenders touch the rule.
_CAPTION_OVERLAP = 2.0

_PDF_DATE = re.compile(
    r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?\s*(?:([Zz])|([+-])(\d{2})'?(\d{2})?'?)?"
)
_LIST_MARK = re.compile(r"^(?:[•●○◦▪■‣·\-–*]|\d{1,3}[.)])\s")
_CAPTION = re.compile(r"^(?:(?:Table|TABLE|Tab\.)\s*[\dIVX]+|表\s*[\d一二三四五六七八九十]+)")

Box = tuple[float, float, float, float]


@dataclass
class _TextBlock:
    page_number: int
    text: str
    line_count: int
    sizes: list[tuple[float, int]]  # (font size, characters) of each non-blank span; empty for OCR'd text
    bbox: Box
    is_ocr: bool = False


@dataclass
class _Table:
    page_number: int
    text: str  # Markdown
    bbox: Box
    caption: str | None = None


_Item = _TextBlock | _Table


def parse_pdf(data: bytes, source: str, *, max_pages: int | None = None) -> Document:
    """Parse a PDF into HEADING, PARAGRAPH and TABLE blocks carrying 1-based page numbers.

    Pages without a text layer are OCR'd (``ParseOptions.ocr``); their blocks have ``is_ocr=True``. ``max_pages``
    (default: ``ParseOptions.max_pages``) stops after that many pages. An encrypted PDF is opened only when it has
    an empty user password.
    """
    if max_pages is not None and max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    import pymupdf

    try:
        pdf = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # PyMuPDF raises FileDataError, EmptyFileError, RuntimeError... for bad input
        raise ParseError(source, "not a valid PDF (file is damaged or not a PDF) — re-export it") from exc
    try:
        return _read(pdf, data, source, max_pages, current_options())
    finally:
        pdf.close()


def _read(pdf: Any, data: bytes, source: str, max_pages: int | None, options: ParseOptions) -> Document:
    if pdf.needs_pass and not pdf.authenticate(""):
        raise ParseError(source, "PDF is encrypted — provide an unencrypted copy")
    if pdf.is_repaired:
        # MuPDF rebuilds a cut-off file from whatever objects survive, which would quietly index part of it.
        if b"%%EOF" not in data[-_EOF_WINDOW:]:
            raise ParseError(source, "PDF is truncated (incomplete download or copy?) — get a complete copy")
        logger.warning("%s: the PDF is damaged and was repaired; some text may be missing", source)

    page_count = pdf.page_count
    limit = max_pages if max_pages is not None else options.max_pages
    pages = min(page_count, limit)
    if pages < page_count:
        logger.warning("%s: reading the first %d of %d pages (max_pages)", source, pages, page_count)

    items: list[_Item] = []
    skipped: list[int] = []
    ocr_pages: list[int] = []
    unread_scans: list[int] = []
    for index in range(pages):
        number = index + 1
        try:
            page = pdf[index]
            scanned = options.ocr == "force" or _is_scan(page)
            if scanned and options.ocr != "off":
                items.extend(_ocr_page(page, number, options, source))
                ocr_pages.append(number)
            else:
                items.extend(_text_page(page, number))
                if scanned:
                    unread_scans.append(number)
        except ParseError:
            raise
        except Exception:  # one damaged page should not cost the rest of the document
            logger.warning("%s: page %d could not be read and is skipped", source, number, exc_info=True)
            skipped.append(number)

    if unread_scans:
        logger.warning(
            "%s: pages %s are scanned images and OCR is off; their text is not indexed", source, unread_scans
        )
    if not items and skipped:
        raise ParseError(source, "no page could be read (file is damaged) — re-export it")
    if not items and unread_scans:
        raise ParseError(source, "no extractable text (scanned PDF) and OCR is off — parse it with ocr='auto'")
    if not items:
        raise ParseError(source, "no extractable text (the pages are blank or only drawings) — nothing to index")

    meta = pdf.metadata or {}
    metadata: dict[str, Any] = {"page_count": page_count, "pages_parsed": pages}
    if pdf.is_repaired:
        metadata["repaired"] = True
    if skipped:
        metadata["skipped_pages"] = skipped
    if ocr_pages:
        metadata["ocr_pages"] = ocr_pages
    if unread_scans:
        metadata["unread_scanned_pages"] = unread_scans
    return build_document(
        _to_blocks(items),
        source=source,
        source_type="pdf",
        title=clean_metadata(meta.get("title")),
        author=clean_metadata(meta.get("author")),
        created_at=pdf_date_to_iso(meta.get("creationDate")),
        last_modified=pdf_date_to_iso(meta.get("modDate")),
        metadata=metadata,
    )


# --- pages with a text layer ----------------------------------------------------------------------------


def _is_scan(page: Any) -> bool:
    """True when the page is essentially an image: (almost) no text, and images cover a good part of it."""
    if len("".join(page.get_text("text").split())) >= _SCAN_MAX_CHARS:
        return False
    area = abs(page.rect)
    if not area:
        return False
    covered = sum(abs(page.rect & info["bbox"]) for info in page.get_image_info())
    return covered / area >= _SCAN_MIN_IMAGE_AREA


def _text_page(page: Any, number: int) -> list[_Item]:
    import pymupdf

    tables = _find_tables(page, number)
    page_dict = page.get_text("dict", flags=pymupdf.TEXTFLAGS_TEXT)
    blocks = _page_blocks(page_dict, number, [table.bbox for table in tables])
    _attach_captions(tables, blocks)
    return _reading_order([*blocks, *tables])


def _page_blocks(page_dict: dict[str, Any], page_number: int, exclude: list[Box] | None = None) -> list[_TextBlock]:
    """Text blocks of a page, leaving out spans that lie inside ``exclude`` (the tables) so nothing is read twice."""
    blocks: list[_TextBlock] = []
    for raw in page_dict.get("blocks", []):
        if raw.get("type") != 0:  # images and drawings carry no text
            continue
        lines: list[str] = []
        sizes: list[tuple[float, int]] = []
        boxes: list[Box] = []
        for line in raw.get("lines", []):
            spans = [s for s in line.get("spans", []) if not exclude or not _inside(s["bbox"], exclude)]
            text = "".join(span.get("text", "") for span in spans).strip()
            if text:
                lines.append(text)
                boxes += [tuple(s["bbox"]) for s in spans]  # type: ignore[misc]
            sizes += [(float(s["size"]), len(s["text"].strip())) for s in spans if s.get("text", "").strip()]
        if lines:
            blocks.append(_TextBlock(page_number, _join_lines(lines), len(lines), sizes, _union(boxes)))
    return blocks


def _inside(bbox: Any, rects: list[Box]) -> bool:
    x, y = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return any(r[0] <= x <= r[2] and r[1] <= y <= r[3] for r in rects)


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _find_tables(page: Any, number: int) -> list[_Table]:
    """Ruled tables on the page as Markdown; grids too small or too empty to be data tables are left as text.

    PyMuPDF's layout model would also find unruled tables, but measured here it costs 1–3 s per page (against
    0.01–0.2 s for the line-based finder), too much for the default on large collections.
    """
    import pymupdf

    if not _has_ruling_grid(page):
        return []
    try:
        found = page.find_tables(use_layout=False).tables
    except Exception:  # a malformed drawing must not cost the page's text
        logger.debug("table detection failed on page %d", number, exc_info=True)
        return []
    if not found:
        return []
    words = page.get_text("words", flags=pymupdf.TEXTFLAGS_WORDS)
    tables: list[_Table] = []
    for found_table in found:
        rows = [[_cell_text(words, cell) for cell in row.cells] for row in found_table.rows]
        bbox: Box = tuple(found_table.bbox)  # type: ignore[assignment]
        header = found_table.header
        if header.external:  # PyMuPDF found a header row above the ruled grid: often really the caption line
            names = [_cell_text(words, cell) for cell in header.cells]
            if sum(1 for name in names if name) >= 2 and not _CAPTION.match(names[0]):
                rows.insert(0, names)
                bbox = _union([bbox, tuple(header.bbox)])  # type: ignore[list-item]
        if _is_data_table(rows):
            tables.append(_Table(number, markdown_table(rows), bbox))
    return tables


#: Ruling lines further apart than this (points) do not touch.
_GRID_TOLERANCE = 2.0
#: Enough segments to decide; pages drawn as thousands of strokes are checked on their first ones.
_GRID_MAX_SEGMENTS = 500


def _has_ruling_grid(page: Any) -> bool:
    """Whether at least two vertical rules each cross two horizontal ones: what the line-based table finder
    needs to find anything. Reading the drawings costs ~3 ms a page against ~140 ms for the finder, so text
    pages without ruled tables skip it (measured on the Debian reference: no table page missed)."""
    horizontal: list[tuple[float, float, float]] = []  # (y, x0, x1)
    vertical: list[tuple[float, float, float]] = []  # (x, y0, y1)
    for path in page.get_cdrawings():
        stroked = "s" in (path.get("type") or "")
        for item in path.get("items", ()):
            if item[0] == "l":
                (x0, y0), (x1, y1) = item[1], item[2]
                if abs(y0 - y1) < 1:
                    horizontal.append((y0, min(x0, x1), max(x0, x1)))
                elif abs(x0 - x1) < 1:
                    vertical.append((x0, min(y0, y1), max(y0, y1)))
            elif item[0] == "re":
                x0, y0, x1, y1 = item[1]
                width, height = abs(x1 - x0), abs(y1 - y0)
                if height < 2 <= width:  # a thin filled bar is a rule
                    horizontal.append(((y0 + y1) / 2, min(x0, x1), max(x0, x1)))
                elif width < 2 <= height:
                    vertical.append(((x0 + x1) / 2, min(y0, y1), max(y0, y1)))
                elif stroked:  # a framed box; a filled-only one is a background (code listings, highlights)
                    horizontal += [(y0, x0, x1), (y1, x0, x1)]
                    vertical += [(x0, y0, y1), (x1, y0, y1)]
    if len(horizontal) < 2 or len(vertical) < 2:
        return False
    tol = _GRID_TOLERANCE
    crossing = 0
    for x, top, bottom in vertical[:_GRID_MAX_SEGMENTS]:
        hits = sum(1 for y, left, right in horizontal[:_GRID_MAX_SEGMENTS]
                   if left - tol <= x <= right + tol and top - tol <= y <= bottom + tol)
        if hits >= 2:
            crossing += 1
            if crossing >= 2:
                return True
    return False


def _cell_text(words: list[Any], cell: Any) -> str:
    """The words whose centre lies in the cell, in reading order (``None`` is a cell merged into its neighbour)."""
    if cell is None:
        return ""
    return join_words([w[4] for w in words if _inside(w[:4], [tuple(cell)])])  # type: ignore[list-item]


def _is_data_table(rows: list[list[str]]) -> bool:
    cells = [cell for row in rows for cell in row]
    if len(rows) < 2 or max(len(row) for row in rows) < 2:
        return False
    return sum(1 for cell in cells if cell.strip()) >= _TABLE_MIN_FILLED * len(cells)


def _attach_captions(tables: list[_Table], blocks: list[_TextBlock]) -> None:
    """Give each table the nearest "Table N" / "表N" line just above (preferred) or below it as its caption."""
    for table in tables:
        best: tuple[float, _TextBlock] | None = None
        for block in blocks:
            if not _CAPTION.match(block.text) or block.bbox[2] < table.bbox[0] or block.bbox[0] > table.bbox[2]:
                continue
            above = table.bbox[1] - block.bbox[3]
            below = block.bbox[1] - table.bbox[3]
            # A caption below the table is slightly penalised: "Table N" lines above are the common style.
            gap = above if above >= -_CAPTION_OVERLAP else below + 1.0
            if -_CAPTION_OVERLAP <= gap <= _CAPTION_MAX_GAP and (best is None or gap < best[0]):
                best = (gap, block)
        if best is not None:
            table.caption = collapse_whitespace(best[1].text)


def _reading_order(items: list[_Item]) -> list[_Item]:
    """Order a page's items by recursive XY-cut: columns left to right, each read top to bottom.

    Where no gutter runs through the whole region (a full-width title or table is in the way), the region is
    cut into horizontal bands, and consecutive bands that share a gutter are read as one multi-column region —
    otherwise paragraphs whose tops happen to line up across columns would be read row by row.
    """
    if len(items) <= 1:
        return items
    columns = _split(items, axis=0)
    if len(columns) > 1:
        return [item for column in columns for item in _reading_order(column)]
    regions: list[list[_Item]] = []
    for band in _split(items, axis=1):
        previous = regions[-1] if regions else []
        if previous and len(_split(band, axis=0)) > 1 and len(_split(previous + band, axis=0)) > 1:
            previous.extend(band)
        else:
            regions.append(list(band))
    if len(regions) > 1:
        return [item for region in regions for item in _reading_order(region)]
    return sorted(items, key=lambda item: (item.bbox[1], item.bbox[0]))


def _split(items: list[_Item], axis: int) -> list[list[_Item]]:
    """Group items separated by gaps that no item crosses along ``axis`` (0 = x, 1 = y)."""
    ordered = sorted(items, key=lambda item: item.bbox[axis])
    groups = [[ordered[0]]]
    reach = ordered[0].bbox[axis + 2]
    for item in ordered[1:]:
        if item.bbox[axis] >= reach:
            groups.append([item])
        else:
            groups[-1].append(item)
        reach = max(reach, item.bbox[axis + 2])
    return groups


# --- scanned pages ----------------------------------------------------------------------------------------


def _ocr_page(page: Any, number: int, options: ParseOptions, source: str) -> list[_Item]:
    """OCR a rendered page; its paragraphs come in the OCR engine's reading order and are never headings."""
    import pymupdf

    from ragtune.parse.ocr import OcrError, OcrTimeoutError, OcrUnavailableError, ocr_page_image

    dpi = _ocr_dpi(page, options.ocr_dpi)
    png = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False).tobytes("png")
    try:
        lines = ocr_page_image(png, languages=options.ocr_languages, dpi=dpi, timeout=options.ocr_timeout_s)
    except OcrUnavailableError as exc:
        raise ParseError(
            source, f"page {number} has no text layer and {exc} — or parse with ocr='off' to skip such pages"
        ) from exc
    except OcrTimeoutError as exc:
        raise ParseError(source, f"page {number}: OCR stopped, {exc} — raise ocr_timeout_s or lower ocr_dpi") from exc
    except OcrError as exc:
        logger.warning("%s: page %d could not be OCR'd (%s) and is skipped", source, number, exc)
        return []

    scale = 72.0 / dpi
    blocks: list[_Item] = []
    group: list[Any] = []
    for line in [*lines, None]:
        if group and (line is None or line.paragraph != group[-1].paragraph):
            box = _union([line_.bbox for line_ in group])
            blocks.append(
                _TextBlock(
                    number,
                    _join_lines([line_.text for line_ in group]),
                    len(group),
                    [],
                    (box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale),
                    is_ocr=True,
                )
            )
            group = []
        if line is not None:
            group.append(line)
    return blocks


def _ocr_dpi(page: Any, dpi: int) -> int:
    """``dpi``, lowered for very large pages so the rendered image stays under ``_OCR_MAX_PIXELS``."""
    width, height = page.rect.width / 72.0, page.rect.height / 72.0
    if width * height * dpi * dpi <= _OCR_MAX_PIXELS:
        return dpi
    return max(72, int(math.sqrt(_OCR_MAX_PIXELS / (width * height))))


# --- blocks -----------------------------------------------------------------------------------------------


def _to_blocks(items: list[_Item]) -> list[Block]:
    text_blocks = [item for item in items if isinstance(item, _TextBlock)]
    body_size = _body_font_size(text_blocks)
    # The largest heading size is level 1; PDFs rarely have more than a few distinct heading sizes.
    heading_sizes = {size for b in text_blocks if (size := _heading_size(b, body_size)) is not None}
    level_of = {size: min(rank + 1, 6) for rank, size in enumerate(sorted(heading_sizes, reverse=True))}

    headings = HeadingPath()
    blocks: list[Block] = []
    for item in items:
        if isinstance(item, _Table):
            blocks.append(
                Block(
                    type=BlockType.TABLE,
                    text=item.text,
                    page_number=item.page_number,
                    heading_path=headings.path,
                    caption=item.caption,
                )
            )
            continue
        size = _heading_size(item, body_size)
        if size is None:
            blocks.append(
                Block(
                    type=BlockType.PARAGRAPH,
                    text=item.text,
                    page_number=item.page_number,
                    heading_path=headings.path,
                    is_ocr=item.is_ocr,
                )
            )
            continue
        level = level_of[size]
        text = " ".join(item.text.split())
        blocks.append(
            Block(
                type=BlockType.HEADING,
                text=text,
                level=level,
                page_number=item.page_number,
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
        elif CJK_WIDE_RE.match(out[-1]) or CJK_WIDE_RE.match(line[0]):
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
