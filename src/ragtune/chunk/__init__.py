"""Chunking strategies: token windows, recursive separators, headings, slides, tables, semantic, legal, papers."""

from ragtune.chunk.base import Chunker, spans_to_chunks, table_header_for, word_count
from ragtune.chunk.factory import CHUNKERS, chunker_class, chunker_name_for, make_chunker
from ragtune.chunk.legal import LegalChunker
from ragtune.chunk.markdown import MarkdownChunker, SlideChunker, TableChunker
from ragtune.chunk.paper import PaperChunker
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.chunk.semantic import SemanticChunker
from ragtune.chunk.tags import extract_tags
from ragtune.chunk.token import TokenChunker
from ragtune.tokens import HFTokenCounter, RegexTokenCounter, TokenCounter, TokenIndex

__all__ = [
    "CHUNKERS", "Chunker", "HFTokenCounter", "LegalChunker", "MarkdownChunker", "PaperChunker", "RecursiveChunker",
    "RegexTokenCounter", "SemanticChunker", "SlideChunker", "TableChunker", "TokenChunker", "TokenCounter",
    "TokenIndex", "chunker_class", "chunker_name_for", "extract_tags", "make_chunker", "spans_to_chunks",
    "split_sentences", "table_header_for", "word_count",
]
