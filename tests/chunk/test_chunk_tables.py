"""Tables and code are cut only between rows and lines; slide and table chunkers keep their units apart."""

from __future__ import annotations

import pytest

from ragtune.chunk import (
    MarkdownChunker,
    RecursiveChunker,
    RegexTokenCounter,
    SlideChunker,
    TableChunker,
    table_header_for,
)
from ragtune.parse import markdown_table
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit

HEADER = ["Region", "Quarter", "Revenue (USD)", "Growth. Notes"]
ROWS = [[f"Region {i}", f"Q{i % 4 + 1}", f"{1000 + i * 37}.50", f"Up {i}%. Strong demand in sector {i}."]
        for i in range(40)]


def _tokens(text: str) -> int:
    return len(RegexTokenCounter().spans(text))


def _table_doc(rows: list[list[str]], caption: str | None = "Table 3: Revenue by region") -> Document:
    blocks = [
        Block(type=BlockType.PARAGRAPH, text="Quarterly results are summarised below. " * 3),
        Block(type=BlockType.TABLE, text=markdown_table([HEADER, *rows]), caption=caption),
        Block(type=BlockType.PARAGRAPH, text="Growth was strongest in the north. Costs fell."),
    ]
    return Document.assemble(blocks, source="report.docx", source_type="docx")


class TestTables:
    def test_a_table_that_fits_stays_whole_in_one_chunk(self):
        doc = _table_doc(ROWS[:4])
        table = doc.blocks[1]
        assert _tokens(table.text) <= 120
        chunks = RecursiveChunker(chunk_size=120, chunk_overlap=10).split(doc)
        holders = [c for c in chunks if c.start <= table.start and table.end <= c.end]
        assert holders, "the table is cut although it fits the budget"
        assert holders[0].meta.table_caption == "Table 3: Revenue by region"

    @pytest.mark.parametrize("chunker_cls", [RecursiveChunker, MarkdownChunker, TableChunker])
    def test_an_oversized_table_is_split_between_rows(self, chunker_cls):
        doc = _table_doc(ROWS)
        table = doc.blocks[1]
        chunks = chunker_cls(chunk_size=100, chunk_overlap=0).split(doc)
        in_table = [c for c in chunks if c.start >= table.start and c.end <= table.end]
        assert len(in_table) > 3
        rows = set(table.text.splitlines())
        for chunk in in_table:
            assert _tokens(chunk.text) <= 100
            assert all(line in rows for line in chunk.text.splitlines()), "a chunk starts or ends inside a row"
        assert all(any(line in c.text.splitlines() for c in chunks) for line in rows)  # no row is lost

    def test_later_pieces_of_a_split_table_know_its_header(self):
        doc = _table_doc(ROWS)
        table = doc.blocks[1]
        header = "\n".join(table.text.splitlines()[:2])
        chunks = RecursiveChunker(chunk_size=100, chunk_overlap=0).split(doc)
        pieces = [c for c in chunks if c.end > table.start and c.start < table.end]
        assert pieces[0].text.find(header) >= 0
        assert table_header_for(doc, pieces[0].start, pieces[0].end) is None
        for piece in pieces[1:]:
            assert table_header_for(doc, piece.start, piece.end) == header
        assert table_header_for(doc, 0, 10) is None  # prose before the table

    def test_code_blocks_are_cut_between_lines(self):
        code = "\n".join(f"total = total + value_{i}  # step {i}. Keep going. Next one." for i in range(30))
        blocks = [Block(type=BlockType.PARAGRAPH, text="The loop below adds values."),
                  Block(type=BlockType.CODE, text=code)]
        doc = Document.assemble(blocks, source="a.md", source_type="md")
        lines = set(code.splitlines())
        chunks = RecursiveChunker(chunk_size=60, chunk_overlap=0).split(doc)
        code_chunks = [c for c in chunks if c.start >= doc.blocks[1].start]
        assert len(code_chunks) > 3
        for chunk in code_chunks:
            assert all(line in lines for line in chunk.text.splitlines())

    def test_table_chunker_never_mixes_two_sheets(self):
        blocks = []
        for sheet in ("Sales", "Costs"):
            blocks.append(Block(type=BlockType.HEADING, text=sheet, level=1, heading_path=[sheet]))
            blocks.append(Block(type=BlockType.TABLE, text=markdown_table([HEADER, *ROWS[:3]]), heading_path=[sheet]))
        doc = Document.assemble(blocks, source="book.xlsx", source_type="xlsx")
        chunks = TableChunker(chunk_size=512, chunk_overlap=0).split(doc)
        assert [c.text.splitlines()[0] for c in chunks] == ["Sales", "Costs"]  # a sheet's name opens its table
        assert [c.meta.heading_path for c in chunks] == [["Sales"], ["Costs"]]
        assert all(doc.text[c.start : c.end] == c.text for c in chunks)


class TestSlides:
    def test_one_chunk_per_slide_when_it_fits(self):
        blocks = []
        for slide in (1, 2, 3):
            blocks.append(Block(type=BlockType.HEADING, text=f"Slide {slide} title", page_number=slide, level=1))
            blocks.append(Block(type=BlockType.LIST, text=f"- point a{slide}\n- point b{slide}", page_number=slide))
        doc = Document.assemble(blocks, source="deck.pptx", source_type="pptx")
        chunks = SlideChunker(chunk_size=256, chunk_overlap=0).split(doc)
        assert [c.meta.page_number for c in chunks] == [1, 2, 3]
        assert chunks[1].text == "Slide 2 title\n\n- point a2\n- point b2"

    def test_a_long_slide_is_split_within_itself(self):
        blocks = [Block(type=BlockType.PARAGRAPH, text="Short slide.", page_number=1),
                  Block(type=BlockType.PARAGRAPH, text="Speaker notes go on. " * 40, page_number=2),
                  Block(type=BlockType.PARAGRAPH, text="Last slide.", page_number=3)]
        doc = Document.assemble(blocks, source="deck.pptx", source_type="pptx")
        chunks = SlideChunker(chunk_size=30, chunk_overlap=0).split(doc)
        assert chunks[0].text == "Short slide." and chunks[-1].text == "Last slide."
        assert all(c.meta.page_number == 2 for c in chunks[1:-1]) and len(chunks) > 3
