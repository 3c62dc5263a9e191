"""Fixed-size token windows with overlap, measured with the embedder's own tokenizer."""

from __future__ import annotations

from ragtune.chunk.base import spans_to_chunks
from ragtune.errors import ConfigError
from ragtune.tokens import RegexTokenCounter, TokenCounter
from ragtune.types import Chunk, Document


def validate_size(chunk_size: int, chunk_overlap: int) -> None:
    """Eager, precise checks shared by the size-based chunkers."""
    if chunk_size <= 0:
        raise ConfigError("chunk_size must be greater than 0.")
    if chunk_overlap < 0:
        raise ConfigError("chunk_overlap must be >= 0.")
    if chunk_overlap >= chunk_size:
        raise ConfigError(f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size}).")


class TokenChunker:
    """Windows of ``chunk_size`` tokens, each starting ``chunk_size - chunk_overlap`` tokens after the last."""

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        validate_size(chunk_size, chunk_overlap)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.counter = counter or RegexTokenCounter()

    def split(self, document: Document) -> list[Chunk]:
        spans = self.counter.spans(document.text)
        if not spans:
            return []
        step = self.chunk_size - self.chunk_overlap
        windows = []
        for first in range(0, len(spans), step):
            last = min(first + self.chunk_size, len(spans)) - 1
            windows.append((spans[first][0], spans[last][1]))
            if last == len(spans) - 1:
                break
        return spans_to_chunks(document, windows)
