"""Recursive splitting: paragraphs, lines, sentences (incl. 。！？), words, merged up to a token budget."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragtune.chunk.base import spans_to_chunks
from ragtune.chunk.token import validate_size
from ragtune.chunk.tokens import RegexTokenCounter, TokenCounter, TokenIndex
from ragtune.types import Chunk, Document

# Each separator is a regex whose match ends a piece; the match stays with the piece before it,
# so pieces tile the text exactly and offsets never drift.
DEFAULT_SEPARATORS: tuple[str, ...] = (
    r"\n\s*\n",
    r"\n",
    r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？；])",
    r"\s+",
)

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

    def split(self, document: Document) -> list[Chunk]:
        return spans_to_chunks(document, self.split_spans(document.text, 0, len(document.text)))

    def split_spans(self, text: str, start: int, end: int, index: TokenIndex | None = None) -> list[Span]:
        """Chunk spans covering text[start:end]; ``index`` may be shared by callers that split many ranges."""
        index = index or TokenIndex(text, self.counter)
        pieces = self._pieces(text, index, start, end, 0)
        return self._merge(index, pieces)

    def _pieces(self, text: str, index: TokenIndex, start: int, end: int, level: int) -> list[Span]:
        if index.count(start, end) <= self.chunk_size:
            return [(start, end)]
        for depth in range(level, len(self.separators)):
            cuts = [m.end() for m in self.separators[depth].finditer(text, start, end) if start < m.end() < end]
            if not cuts:
                continue
            bounds = [start, *cuts, end]
            out: list[Span] = []
            for s, e in zip(bounds, bounds[1:], strict=False):
                out.extend(self._pieces(text, index, s, e, depth + 1))
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
