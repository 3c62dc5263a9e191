"""Recursive splitting: paragraphs, lines, sentences (incl. 。！？), words, merged up to a token budget."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ragtune.chunk.base import spans_to_chunks
from ragtune.chunk.token import validate_size
from ragtune.tokens import RegexTokenCounter, TokenCounter, TokenIndex
from ragtune.types import Block, BlockType, Chunk, Document

# Each separator is a regex whose match ends a piece; the match stays with the piece before it,
# so pieces tile the text exactly and offsets never drift.
DEFAULT_SEPARATORS: tuple[str, ...] = (
    r"\n\s*\n",
    r"\n",
    r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？；])",
    r"\s+",
)
# Tables are cut between rows and code between lines; a single row or line longer than the budget is the
# only thing ever cut inside (on whitespace, then on token boundaries).
_LINE_SEPARATORS: dict[BlockType, tuple[str, ...]] = {
    BlockType.TABLE: (r"\n", r"\s+"),
    BlockType.CODE: (r"\n\s*\n", r"\n", r"\s+"),
}

Span = tuple[int, int]


class RecursiveChunker:
    """Splits on the coarsest separator that makes pieces fit, then packs pieces into chunks with overlap."""

    def __init__(
        self,
        chunk_size: int = 256,
        chunk_overlap: int = 32,
        counter: TokenCounter | None = None,
        separators: Sequence[str] = DEFAULT_SEPARATORS,
    ) -> None:
        validate_size(chunk_size, chunk_overlap)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.counter = counter or RegexTokenCounter()
        self.separators = [re.compile(s) for s in separators]
        self._line_separators = {kind: [re.compile(s) for s in seps] for kind, seps in _LINE_SEPARATORS.items()}

    def split(self, document: Document) -> list[Chunk]:
        return spans_to_chunks(document, self.split_spans(document.text, 0, len(document.text), None, document.blocks))

    def split_spans(
        self, text: str, start: int, end: int, index: TokenIndex | None = None, blocks: Sequence[Block] = (),
    ) -> list[Span]:
        """Chunk spans covering text[start:end]; ``index`` may be shared by callers that split many ranges.

        ``blocks`` (the document's, in order) let tables and code be cut only between rows and lines: a table
        or code block that fits the budget always lands whole in one chunk.
        """
        index = index or TokenIndex(text, self.counter)
        pieces: list[Span] = []
        for s, e, kind in _regions(blocks, start, end):
            separators = self._line_separators[kind] if kind is not None else self.separators
            pieces.extend(self._pieces(text, index, s, e, 0, separators))
        return self._merge(index, pieces)

    def split_sections(
        self, document: Document, sections: Sequence[Span], metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Chunk]:
        """Chunks that never cross a section boundary; every piece of a section gets that section's metadata."""
        index = TokenIndex(document.text, self.counter)
        spans: list[Span] = []
        span_metadata: list[Mapping[str, Any]] = []
        for n, (start, end) in enumerate(sections):
            pieces = self.split_spans(document.text, start, end, index, document.blocks)
            spans.extend(pieces)
            span_metadata.extend([metadata[n] if metadata is not None else {}] * len(pieces))
        return spans_to_chunks(document, spans, span_metadata)

    def _pieces(
        self, text: str, index: TokenIndex, start: int, end: int, level: int, separators: Sequence[re.Pattern[str]],
    ) -> list[Span]:
        if index.count(start, end) <= self.chunk_size:
            return [(start, end)]
        for depth in range(level, len(separators)):
            cuts = [m.end() for m in separators[depth].finditer(text, start, end) if start < m.end() < end]
            if not cuts:
                continue
            bounds = [start, *cuts, end]
            out: list[Span] = []
            for s, e in zip(bounds, bounds[1:], strict=False):
                out.extend(self._pieces(text, index, s, e, depth + 1, separators))
            return out
        return self._hard_split(index, start, end)

    def _hard_split(self, index: TokenIndex, start: int, end: int) -> list[Span]:
        # No separator left (a very long word or an unbroken CJK run): cut on token boundaries.
        first = index.token_at_or_after(start)
        last = index.token_at_or_after(end)
        out = []
        for i in range(first, last, self.chunk_size):
            s = start if i == first else index.starts[i]
            e = end if i + self.chunk_size >= last else index.starts[i + self.chunk_size]
            out.append((s, e))
        return out or [(start, end)]

    def _merge(self, index: TokenIndex, pieces: list[Span]) -> list[Span]:
        chunks: list[Span] = []
        i = 0
        while i < len(pieces):
            j = i
            tokens = 0
            while j < len(pieces):
                n = index.count(*pieces[j])
                if j > i and tokens + n > self.chunk_size:
                    break
                tokens += n
                j += 1
            chunks.append((pieces[i][0], pieces[j - 1][1]))
            if j >= len(pieces):
                break
            # Start the next chunk with trailing pieces of this one that fit in the overlap budget.
            back = j
            overlap = 0
            while back - 1 > i and overlap + index.count(*pieces[back - 1]) <= self.chunk_overlap:
                back -= 1
                overlap += index.count(*pieces[back])
            i = back
        return chunks


def _regions(blocks: Sequence[Block], start: int, end: int) -> list[tuple[int, int, BlockType | None]]:
    """Tile [start, end) into runs of prose (kind None) and single table or code blocks.

    A region runs up to the next region's start, so the separators between blocks stay with the block
    before them and the regions cover the range exactly.
    """
    regions: list[tuple[int, int, BlockType | None]] = []
    for block in blocks:
        if block.end <= start or block.start >= end:
            continue
        region_start = max(block.start, start)
        kind = block.type if block.type in _LINE_SEPARATORS else None
        if not regions:
            if kind is not None and region_start > start:
                regions.append((start, region_start, None))  # text before the first block
                regions.append((region_start, end, kind))
            else:
                regions.append((start, end, kind))
        elif kind is not None or regions[-1][2] is not None:
            regions[-1] = (regions[-1][0], region_start, regions[-1][2])
            regions.append((region_start, end, kind))
    return regions or [(start, end, None)]
