"""Chunking strategies: token windows, recursive separators and heading-aware Markdown."""

from ragtune.chunk.base import Chunker, spans_to_chunks, word_count
from ragtune.chunk.factory import CHUNKERS, chunker_name_for, make_chunker
from ragtune.chunk.markdown import MarkdownChunker
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.chunk.token import TokenChunker
from ragtune.chunk.tokens import HFTokenCounter, RegexTokenCounter, TokenCounter, TokenIndex

__all__ = [
    "CHUNKERS", "Chunker", "HFTokenCounter", "MarkdownChunker", "RecursiveChunker", "RegexTokenCounter",
    "TokenChunker", "TokenCounter", "TokenIndex", "chunker_name_for", "make_chunker", "spans_to_chunks",
    "word_count",
]
