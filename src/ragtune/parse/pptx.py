"""PowerPoint (.pptx) parser (python-pptx): per slide its title, text, lists, tables and speaker notes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ragtune.parse.blocks import build_document, clean_metadata, markdown_table
from ragtune.parse.options import current_options
from ragtune.parse.safety import CORE_PROPERTIES_PART, open_office_package
from ragtune.types import Block, BlockType, Document

if TYPE_CHECKING:
    from pptx.presentation import Presentation
    from pptx.slide import Slide
    from pptx.table import Table
    from pptx.text.text import TextFrame

logger = logging.getLogger(__name__)

#: Groups nested deeper than this are not read; real decks nest a few levels at most.
_MAX_GROUP_DEPTH = 20
_DRAWING_NS = "{http://schemas.openxmlformats.org/drawingml/2006/main}"


def parse_pptx(data: bytes, source: str) -> Document:
    """Parse a .pptx: each slide's title as a HEADING, then its text, lists, tables and notes, ``page_number`` = slide.

    Slides past ``max_pages`` are dropped with a warning.
    """
    import pptx

    deck, parts = open_office_package(data, source, kind="PPTX", legacy="PowerPoint (.ppt)",
                                      application="PowerPoint presentation", opener=pptx.Presentation)

    limit = current_options().max_pages
    blocks: list[Block] = []
    for number, slide in enumerate(deck.slides, start=1):
        if number > limit:
            logger.warning(
                "%s: only the first %d of %d slides are read — raise max_pages to read them all",
                source,
                limit,
                len(deck.slides),
            )
            break
        blocks.extend(_slide_blocks(slide, number))
    # Without the part python-pptx invents properties (title "PowerPoint Presentation", modified now).
    properties = _core_properties(deck, source) if CORE_PROPERTIES_PART in parts else {}
    return build_document(blocks, source=source, source_type="pptx", **properties)


def _slide_blocks(slide: Slide, number: int) -> list[Block]:
    title_shape = slide.shapes.title
    title = _clean(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else ""
    path = [title] if title else []
    blocks: list[Block] = []
    if title:
        blocks.append(Block(type=BlockType.HEADING, text=title, level=1, heading_path=path, page_number=number))
    title_id = title_shape.shape_id if title_shape is not None else None
    for shape in _shapes(slide.shapes, 0):
        if title_id is not None and shape.shape_id == title_id:
            continue
        if getattr(shape, "has_table", False):
            rows = _table_rows(shape.table)
            if not any(cell for row in rows for cell in row):
                continue  # an unfilled table would be a block of bare pipes
            blocks.append(
                Block(
                    type=BlockType.TABLE,
                    text=markdown_table(rows),
                    heading_path=path,
                    page_number=number,
                )
            )
        elif getattr(shape, "has_text_frame", False):
            for block_type, text in _text_frame_blocks(shape.text_frame, _is_body_placeholder(shape)):
                blocks.append(Block(type=block_type, text=text, heading_path=path, page_number=number))
    notes = _notes(slide)
    if notes:
        blocks.append(Block(type=BlockType.PARAGRAPH, text=f"Notes: {notes}", heading_path=path, page_number=number))
    return blocks


def _shapes(shapes: Iterable[Any], depth: int) -> Iterator[Any]:
    """Shapes in the slide's order, the members of groups in place of the group."""
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        # isinstance, not shape.shape_type: that raises NotImplementedError for shapes python-pptx cannot classify.
        if isinstance(shape, GroupShape):
            if depth < _MAX_GROUP_DEPTH:
                yield from _shapes(shape.shapes, depth + 1)
        else:
            yield shape


def _is_body_placeholder(shape: Any) -> bool:
    """Body and content placeholders show their paragraphs as bullets unless a paragraph turns them off."""
    from pptx.enum.shapes import PP_PLACEHOLDER

    if not shape.is_placeholder:
        return False
    return shape.placeholder_format.type in (PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT)


def _text_frame_blocks(frame: TextFrame, bulleted_by_default: bool) -> list[tuple[BlockType, str]]:
    """Runs of bulleted paragraphs as LIST blocks (indented by level), other runs as PARAGRAPH blocks."""
    runs: list[tuple[bool, list[str]]] = []
    for paragraph in frame.paragraphs:
        text = _clean(paragraph.text)
        if not text:
            continue
        bullet = _has_bullet(paragraph._p, bulleted_by_default or paragraph.level > 0)
        line = "  " * paragraph.level + "- " + text if bullet else text
        if runs and runs[-1][0] == bullet:
            runs[-1][1].append(line)
        else:
            runs.append((bullet, [line]))
    return [(BlockType.LIST if bullet else BlockType.PARAGRAPH, "\n".join(lines)) for bullet, lines in runs]


def _has_bullet(p: Any, default: bool) -> bool:
    """A paragraph's own bullet setting (``a:buChar``/``a:buAutoNum`` on, ``a:buNone`` off), else ``default``."""
    props = p.pPr
    if props is not None:
        if props.find(f"{_DRAWING_NS}buNone") is not None:
            return False
        if props.find(f"{_DRAWING_NS}buChar") is not None or props.find(f"{_DRAWING_NS}buAutoNum") is not None:
            return True
    return default


def _table_rows(table: Table) -> list[list[str]]:
    """Cell texts row by row; a merged cell's text appears once, in its first row and column."""
    return [["" if cell.is_spanned else _clean(cell.text) for cell in row.cells] for row in table.rows]


def _notes(slide: Slide) -> str:
    if not slide.has_notes_slide:
        return ""
    frame = slide.notes_slide.notes_text_frame
    return _clean(frame.text) if frame is not None else ""


def _clean(text: str) -> str:
    # python-pptx returns a line break inside a paragraph as a vertical tab.
    return text.replace("\v", "\n").strip()


def _core_properties(deck: Presentation, source: str) -> dict[str, str | None]:
    try:
        props = deck.core_properties
        return {
            "title": clean_metadata(props.title),
            "author": clean_metadata(props.author),
            "created_at": _iso(props.created),
            "last_modified": _iso(props.modified),
        }
    except Exception:  # malformed docProps must not cost the slides' text
        logger.warning("%s: presentation properties are unreadable and are ignored", source, exc_info=True)
        return {}


def _iso(value: datetime | None) -> str | None:
    if not isinstance(value, datetime):
        return None
    # python-pptx converts the stored W3CDTF time to UTC and drops the zone; put it back, as python-docx keeps it.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
