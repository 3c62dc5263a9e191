"""Word (.docx) parser (python-docx): headings, list runs, paragraphs and Markdown tables in document order."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ragtune.parse.blocks import HeadingPath, build_document, clean_metadata, markdown_table
from ragtune.parse.safety import CORE_PROPERTIES_PART, open_office_package
from ragtune.types import Block, BlockType, Document

if TYPE_CHECKING:
    from docx.document import Document as WordDocument
    from docx.table import Table
    from docx.text.paragraph import Paragraph

logger = logging.getLogger(__name__)

_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)
_NUMBERED_LIST_STYLE = re.compile(r"^list\b.*\s(\d)$", re.IGNORECASE)  # "List Bullet 2" is nested one level
#: Custom heading styles usually derive from a built-in one; a few hops reach it.
_STYLE_DEPTH = 5
# Captions typed as plain paragraphs ("Table 2: Rates", "表 3 费用标准") next to a table; short, so that a
# sentence merely mentioning a table is not taken for its caption.
_CAPTION_TEXT = re.compile(r"^(table|tab\.|表)\s*[0-9一二三四五六七八九十]+[\s.:：、—-]", re.IGNORECASE)
_CAPTION_MAX_CHARS = 200
#: Tables nested deeper than this are read as their cells' text only; real documents nest two or three levels.
_MAX_TABLE_DEPTH = 5


def parse_docx(data: bytes, source: str) -> Document:
    """Parse a .docx into HEADING, PARAGRAPH, LIST and TABLE blocks, tables interleaved in document order."""
    import docx

    word, parts = open_office_package(data, source, kind="DOCX", legacy="Word (.doc)", application="Word document",
                                      opener=docx.Document)

    # Without the part python-docx invents properties (title "Word Document", modified now); never report those.
    properties = _core_properties(word, source) if CORE_PROPERTIES_PART in parts else {}
    return build_document(_read_blocks(word), source=source, source_type="docx", **properties)


def _body_items(container: Any, word: WordDocument) -> Iterator[Paragraph | Table]:
    """Paragraphs and tables in the order they appear, including those inside content controls (``w:sdt``)."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in container.iterchildren():
        if child.tag == qn("w:p"):
            yield Paragraph(child, word)
        elif child.tag == qn("w:tbl"):
            yield Table(child, word)
        elif child.tag == qn("w:sdt"):
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _body_items(content, word)


def _read_blocks(word: WordDocument) -> list[Block]:
    from docx.table import Table

    blocks: list[Block] = []
    headings = HeadingPath()
    list_lines: list[str] = []
    pending_caption: str | None = None
    last_table: Block | None = None  # the outer table just read, which a caption set below it belongs to

    def flush_list() -> None:
        nonlocal last_table
        if list_lines:
            last_table = None
            blocks.append(Block(type=BlockType.LIST, text="\n".join(list_lines), heading_path=headings.path))
            list_lines.clear()

    for item in _body_items(word.element.body, word):
        if isinstance(item, Table):
            flush_list()
            last_table = None
            for depth, table in enumerate(_tables_with_nested(item)):
                rows = _table_rows(table)
                if not any(cell.strip() for row in rows for cell in row):
                    continue  # layout grids and placeholders with no text would be blocks of bare pipes
                block = Block(
                    type=BlockType.TABLE,
                    text=markdown_table(rows),
                    heading_path=headings.path,
                    caption=pending_caption if depth == 0 else None,
                )
                blocks.append(block)
                if depth == 0:
                    last_table = block
            pending_caption = None
            continue
        text = item.text.strip()
        if not text:
            continue
        style_names = _style_names(item)
        level = _heading_level(item, style_names)
        list_depth = None if level is not None else _list_depth(item, style_names)
        if list_depth is not None:
            list_lines.append("  " * list_depth + "- " + text)
            continue
        flush_list()
        if level is not None:
            blocks.append(
                Block(type=BlockType.HEADING, text=text, level=level, heading_path=headings.enter(level, text))
            )
            pending_caption = last_table = None
            continue
        is_caption = "caption" in (name.lower() for name in style_names) or (
            len(text) <= _CAPTION_MAX_CHARS and _CAPTION_TEXT.match(text) is not None
        )
        pending_caption = None
        if is_caption and last_table is not None and last_table.caption is None:
            last_table.caption = text  # a caption set below its table
        elif is_caption:
            pending_caption = text  # a caption set above the table that follows
        last_table = None
        blocks.append(Block(type=BlockType.PARAGRAPH, text=text, heading_path=headings.path))
    flush_list()
    return blocks


def _style_names(paragraph: Paragraph) -> list[str]:
    """The paragraph's style name followed by the styles it is based on."""
    names: list[str] = []
    style = paragraph.style
    while style is not None and len(names) < _STYLE_DEPTH:
        if style.name:
            names.append(style.name)
        style = style.base_style
    return names


def _heading_level(paragraph: Paragraph, style_names: list[str]) -> int | None:
    for name in style_names:
        if name.lower() == "title":
            return 1
        match = _HEADING_STYLE.match(name)
        if match:
            return max(1, int(match.group(1)))
    # Documents from WPS and some converters mark headings only with an outline level (0-based; 9 = body text).
    outline = paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val")
    if outline and outline[0].isdigit() and int(outline[0]) < 9:
        return int(outline[0]) + 1
    return None


def _list_depth(paragraph: Paragraph, style_names: list[str]) -> int | None:
    """Nesting depth (0 = top) when the paragraph is a list item, by style or by numbering; None otherwise."""
    numbering = paragraph._p.xpath("./w:pPr/w:numPr")
    if not numbering and not any(name.lower().startswith("list") for name in style_names):
        return None
    level = paragraph._p.xpath("./w:pPr/w:numPr/w:ilvl/@w:val")
    if level and level[0].isdigit():
        return int(level[0])
    styled = next((m for m in map(_NUMBERED_LIST_STYLE.match, style_names) if m), None)
    return int(styled.group(1)) - 1 if styled else 0


def _tables_with_nested(table: Table, depth: int = 0) -> Iterator[Table]:
    """The table, then the tables nested in its cells (depth first), each to become its own TABLE block.

    A Markdown cell cannot hold a table, and flattening one into a cell would lose its rows and columns.
    """
    yield table
    if depth >= _MAX_TABLE_DEPTH:
        return
    seen: set[object] = set()  # the elements themselves: lxml keeps one proxy per element while it is referenced
    for row in table.rows:
        for cell in row.cells:
            if cell._tc in seen:  # merged cells are returned once per grid column and row they cover
                continue
            seen.add(cell._tc)
            for nested in cell.tables:
                yield from _tables_with_nested(nested, depth + 1)


def _table_rows(table: Table) -> list[list[str]]:
    """Cell texts row by row; a merged cell's text appears once, in its first row and column, the rest left empty."""
    rows: list[list[str]] = []
    above: dict[int, object] = {}  # grid column -> the cell element seen there in the previous row
    for row in table.rows:
        cells = [""] * row.grid_cols_before
        current: dict[int, object] = {}
        row_cells = row.cells
        i = 0
        while i < len(row_cells):
            cell = row_cells[i]
            span = max(1, cell.grid_span)
            column = len(cells)
            current[column] = cell._tc
            # python-docx repeats a horizontally merged cell once per column it spans, and a vertically merged
            # one in every row it covers.
            continued = above.get(column) is cell._tc
            cells.append("" if continued else cell.text)
            cells.extend([""] * (span - 1))
            i += span
        above = current
        rows.append(cells)
    return rows


def _core_properties(word: WordDocument, source: str) -> dict[str, str | None]:
    try:
        props = word.core_properties
        return {
            "title": clean_metadata(props.title),
            "author": clean_metadata(props.author),
            "created_at": _iso(props.created),
            "last_modified": _iso(props.modified),
        }
    except Exception:  # malformed docProps must not cost the document's text
        logger.warning("%s: document properties are unreadable and are ignored", source, exc_info=True)
        return {"title": None, "author": None, "created_at": None, "last_modified": None}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None
