"""Heading-aware chunking: a chunk never spans two sections, and carries its section's heading path."""

from __future__ import annotations

from ragtune.chunk.base import spans_to_chunks
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.chunk.tokens import TokenCounter, TokenIndex
from ragtune.types import BlockType, Chunk, Document


class MarkdownChunker:
    """Sections start at heading blocks; each section is split recursively within the token budget."""

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)

    def split(self, document: Document) -> list[Chunk]:
        text = document.text
        index = TokenIndex(text, self._recursive.counter)
        sections: list[tuple[int, int]] = []
        start = 0
        for block in document.blocks:
            if block.type == BlockType.HEADING and block.start > start:
                sections.append((start, block.start))
                start = block.start
        sections.append((start, len(text)))
        spans = []
        for s, e in sections:
            spans.extend(self._recursive.split_spans(text, s, e, index))
        return spans_to_chunks(document, spans)
