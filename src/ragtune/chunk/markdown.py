"""Structure-aware chunking: sections from headings, slides or tables; a chunk never spans two sections."""

from __future__ import annotations

from ragtune.chunk.recursive import RecursiveChunker, Span
from ragtune.tokens import TokenCounter
from ragtune.types import BlockType, Chunk, Document


class MarkdownChunker:
    """Sections start at heading blocks; each section is split recursively within the token budget."""

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)

    def split(self, document: Document) -> list[Chunk]:
        starts = [b.start for b in document.blocks if b.type == BlockType.HEADING]
        return self._recursive.split_sections(document, _sections(starts, len(document.text)))


class SlideChunker:
    """One chunk per slide (or page) when it fits the budget; a longer slide is split within itself.

    Slides are told apart by their blocks' ``page_number``, which the PPTX parser sets to the slide number.
    """

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)

    def split(self, document: Document) -> list[Chunk]:
        starts = [
            b.start for i, b in enumerate(document.blocks)
            if i == 0 or b.page_number != document.blocks[i - 1].page_number
        ]
        return self._recursive.split_sections(document, _sections(starts, len(document.text)))


class TableChunker:
    """Every table block is chunked on its own, cut between rows when it is longer than the budget.

    Spreadsheets and CSV files are tables throughout: a chunk should hold whole rows of one table (or one
    row group the parser made), never the end of one sheet and the start of the next.
    """

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)

    def split(self, document: Document) -> list[Chunk]:
        blocks = document.blocks
        starts: list[int] = []
        for i, block in enumerate(blocks):
            previous = blocks[i - 1].type if i else None
            following = blocks[i + 1].type if i + 1 < len(blocks) else None
            # A heading right before a table (a sheet name, a caption) opens that table's section.
            opens_table = block.type == BlockType.HEADING and following == BlockType.TABLE
            is_table = block.type == BlockType.TABLE
            ends_table = previous == BlockType.TABLE and not is_table
            if opens_table or ends_table or (is_table and previous != BlockType.HEADING):
                starts.append(block.start)
        return self._recursive.split_sections(document, _sections(starts, len(document.text)))


def _sections(starts: list[int], length: int) -> list[Span]:
    """Sections that begin at ``starts`` (and at 0) and tile the text."""
    bounds = sorted({0, *(s for s in starts if 0 < s < length)})
    return [(s, e) for s, e in zip(bounds, [*bounds[1:], length], strict=True) if s < e]
