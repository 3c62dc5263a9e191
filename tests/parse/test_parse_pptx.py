"""Tests for the PowerPoint parser: slide titles, text, lists, tables, groups, notes, properties and limits."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from ragtune.errors import ParseError
from ragtune.parse.options import ParseOptions, parse_options
from ragtune.parse.pptx import parse_pptx
from ragtune.parse.spreadsheet import table_cells
from ragtune.types import BlockType, Document

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parents[1] / "fixtures" / "office"


def make_pptx(build: Callable[..., None]) -> bytes:
    """``build(presentation)`` fills a new python-pptx presentation; its saved bytes are returned."""
    import pptx

    deck = pptx.Presentation()
    build(deck)
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def build_quarterly(deck) -> None:
    from pptx.util import Inches

    title_slide = deck.slides.add_slide(deck.slide_layouts[0])  # Title Slide
    title_slide.shapes.title.text = "Quarterly Review"
    title_slide.placeholders[1].text = "Finance team, 2024 Q1"

    bullets = deck.slides.add_slide(deck.slide_layouts[1])  # Title and Content
    bullets.shapes.title.text = "Highlights"
    frame = bullets.placeholders[1].text_frame
    frame.text = "Revenue up 12%"
    for text, level in [("Driven by APAC", 1), ("Costs flat", 0)]:
        paragraph = frame.add_paragraph()
        paragraph.text, paragraph.level = text, level
    bullets.notes_slide.notes_text_frame.text = "Mention the APAC hires."

    table_slide = deck.slides.add_slide(deck.slide_layouts[5])  # Title Only
    table_slide.shapes.title.text = "预算"
    table = table_slide.shapes.add_table(3, 3, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([["部门", "预算", "备注"], ["研发", "120", ""], ["市场", "80", "含活动 | 差旅"]]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(1, 2).merge(table.cell(2, 2))
    table.cell(1, 2).text = "合并说明"

    group_slide = deck.slides.add_slide(deck.slide_layouts[6])  # Blank: no title
    group = group_slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1)).text_frame.text = "Inside a group"
    inner = group.shapes.add_group_shape()
    inner.shapes.add_textbox(Inches(1), Inches(2), Inches(3), Inches(1)).text_frame.text = "Nested deeper"
    box = group_slide.shapes.add_textbox(Inches(1), Inches(4), Inches(4), Inches(1)).text_frame
    box.text = "First line\vsoft break"  # python-pptx writes "\v" as a line break (a:br) inside the paragraph

    props = deck.core_properties
    props.author = "Ana Silva"
    props.title = "Q1 Review"
    props.created = datetime(2024, 4, 1, 9, 0, 0)
    props.modified = datetime(2024, 4, 5, 17, 30, 0)


@pytest.fixture
def quarterly() -> Document:
    return parse_pptx(make_pptx(build_quarterly), "q1.pptx")


def assert_offsets(document: Document) -> None:
    for block in document.blocks:
        assert document.text[block.start : block.end] == block.text


class TestParsePptx:
    def test_blocks_per_slide(self, quarterly: Document) -> None:
        assert quarterly.source_type == "pptx"
        assert [(b.page_number, b.type, b.text.split("\n")[0]) for b in quarterly.blocks] == [
            (1, BlockType.HEADING, "Quarterly Review"),
            (1, BlockType.PARAGRAPH, "Finance team, 2024 Q1"),
            (2, BlockType.HEADING, "Highlights"),
            (2, BlockType.LIST, "- Revenue up 12%"),
            (2, BlockType.PARAGRAPH, "Notes: Mention the APAC hires."),
            (3, BlockType.HEADING, "预算"),
            (3, BlockType.TABLE, "| 部门 | 预算 | 备注 |"),
            (4, BlockType.PARAGRAPH, "Inside a group"),
            (4, BlockType.PARAGRAPH, "Nested deeper"),
            (4, BlockType.PARAGRAPH, "First line"),
        ]
        assert_offsets(quarterly)

    def test_heading_paths(self, quarterly: Document) -> None:
        paths = {(b.page_number, tuple(b.heading_path)) for b in quarterly.blocks}
        assert paths == {(1, ("Quarterly Review",)), (2, ("Highlights",)), (3, ("预算",)), (4, ())}
        assert all(b.level == 1 for b in quarterly.blocks if b.type is BlockType.HEADING)

    def test_bullets_keep_levels(self, quarterly: Document) -> None:
        (bullets,) = [b.text for b in quarterly.blocks if b.type is BlockType.LIST]
        assert bullets == "- Revenue up 12%\n  - Driven by APAC\n- Costs flat"

    def test_table_with_merged_cells(self, quarterly: Document) -> None:
        (table,) = [b for b in quarterly.blocks if b.type is BlockType.TABLE]
        assert table_cells(table.text) == [["部门", "预算", "备注"], ["研发", "120", "合并说明"], ["市场", "80", ""]]

    def test_line_break_inside_paragraph(self, quarterly: Document) -> None:
        assert quarterly.blocks[-1].text == "First line\nsoft break"

    def test_core_properties(self, quarterly: Document) -> None:
        assert quarterly.title == "Q1 Review"
        assert quarterly.author == "Ana Silva"
        assert quarterly.created_at == "2024-04-01T09:00:00+00:00"
        assert quarterly.last_modified == "2024-04-05T17:30:00+00:00"

    def test_max_pages(self, caplog: pytest.LogCaptureFixture) -> None:
        with parse_options(ParseOptions(max_pages=2)), caplog.at_level(logging.WARNING):
            document = parse_pptx(make_pptx(build_quarterly), "q1.pptx")
        assert {b.page_number for b in document.blocks} == {1, 2}
        assert "only the first 2 of 4 slides" in caplog.text

    def test_empty_deck(self) -> None:
        document = parse_pptx(make_pptx(lambda deck: None), "empty.pptx")
        assert document.blocks == [] and document.text == ""

    def test_legacy_ppt(self) -> None:
        with pytest.raises(ParseError, match=r"old.pptx: is an encrypted or legacy PowerPoint \(\.ppt\)"):
            parse_pptx(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "old.pptx")

    def test_not_a_presentation(self, tmp_path: Path) -> None:
        import docx

        buffer = io.BytesIO()
        docx.Document().save(buffer)
        with pytest.raises(ParseError, match="letter.pptx: not a valid PPTX"):
            parse_pptx(buffer.getvalue(), "letter.pptx")
        with pytest.raises(ParseError, match="junk.pptx: not a valid PPTX"):
            parse_pptx(b"junk", "junk.pptx")


class TestPythonPptxFixtures:
    def test_notes(self) -> None:
        document = parse_pptx((FIXTURES / "sld-notes.pptx").read_bytes(), "sld-notes.pptx")
        assert [(b.page_number, b.type, b.text) for b in document.blocks] == [(1, BlockType.PARAGRAPH, "Notes: Notes")]

    def test_tables_with_spans(self) -> None:
        document = parse_pptx((FIXTURES / "tbl-cell.pptx").read_bytes(), "tbl-cell.pptx")
        tables = [(b.page_number, table_cells(b.text)) for b in document.blocks if b.type is BlockType.TABLE]
        assert tables[0][1][0] == [
            "having custom margins",
            "vert anchor is inherited",
            "vert anchor is top",
            "vert anchor is bottom",
        ]
        # Slide 2 merges cells into one "merged cell": its text appears once, the spanned cells stay empty.
        merged = [cells for page, cells in tables if page == 2]
        assert merged and all(sum(cell == "merged cell" for row in t for cell in row) == 1 for t in merged)
        assert (3, [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]) in tables
        assert_offsets(document)

    def test_text_frames(self) -> None:
        document = parse_pptx((FIXTURES / "txt-text.pptx").read_bytes(), "txt-text.pptx")
        assert "yahoo.com" in document.text
        assert "| Text run in table cell |" in document.text
        assert_offsets(document)

    def test_missing_core_properties_are_not_invented(self) -> None:
        # Without docProps/core.xml python-pptx would report the title "PowerPoint Presentation" and a date of now.
        document = parse_pptx((FIXTURES / "no-core-props.pptx").read_bytes(), "no-core-props.pptx")
        assert document.title == "Minimal Deck"  # the first slide title
        assert (document.author, document.created_at, document.last_modified) == (None, None, None)
