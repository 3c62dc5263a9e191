"""Chooses a chunker by name, or by source type when the name is 'auto'."""

from __future__ import annotations

from ragtune.chunk.base import Chunker
from ragtune.chunk.markdown import MarkdownChunker
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.chunk.token import TokenChunker
from ragtune.chunk.tokens import TokenCounter
from ragtune.errors import ConfigError

CHUNKERS = {"token": TokenChunker, "recursive": RecursiveChunker, "markdown": MarkdownChunker}
# Heading-structured formats keep sections apart; everything else is split recursively.
_AUTO = {"md": "markdown", "html": "markdown", "docx": "markdown"}


def chunker_name_for(name: str, source_type: str) -> str:
    """Resolve 'auto' to the strategy that suits ``source_type``."""
    if name == "auto":
        return _AUTO.get(source_type, "recursive")
    if name not in CHUNKERS:
        raise ConfigError(f"unknown chunker '{name}' — choose one of: auto, {', '.join(CHUNKERS)}")
    return name


def make_chunker(name: str, *, chunk_size: int, chunk_overlap: int, counter: TokenCounter | None = None) -> Chunker:
    """A chunker instance for a resolved strategy name."""
    if name not in CHUNKERS:
        raise ConfigError(f"unknown chunker '{name}' — choose one of: auto, {', '.join(CHUNKERS)}")
    return CHUNKERS[name](chunk_size=chunk_size, chunk_overlap=chunk_overlap, counter=counter)
