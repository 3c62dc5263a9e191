"""Semantic chunking: cut where the meaning of neighbouring sentences shifts most, within the token budget."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ragtune.chunk.base import spans_to_chunks
from ragtune.chunk.recursive import RecursiveChunker, Span
from ragtune.errors import ConfigError
from ragtune.text import split_sentences
from ragtune.tokens import TokenCounter, TokenIndex
from ragtune.types import BlockType, Chunk, Document

if TYPE_CHECKING:
    from ragtune.embed.base import Embedder

__all__ = ["SemanticChunker"]

log = logging.getLogger(__name__)


class SemanticChunker:
    """Groups consecutive sentences and starts a new chunk where neighbouring sentences drift apart.

    Every gap between two sentences is scored by the cosine distance between the mean embedding of the
    ``buffer_size + 1`` sentences before it and of those after it; a breakpoint goes wherever that distance
    is above the ``breakpoint_percentile``-th percentile of all gaps in the document (the percentile rule of
    LlamaIndex's SemanticSplitterNodeParser and LangChain's SemanticChunker, with their default of 95).
    Their windows are centred on a sentence and so overlap the gap they score, which blurs the boundary;
    windows on either side of the gap find it sharply and need each sentence encoded only once.
    A group longer than ``chunk_size`` tokens is split recursively, so no chunk exceeds the budget. Tables
    and code blocks are single units: they are never cut into sentences.
    """

    def __init__(
        self,
        chunk_size: int = 256,
        chunk_overlap: int = 32,
        counter: TokenCounter | None = None,
        *,
        embedder: Embedder | None = None,
        breakpoint_percentile: float = 95.0,
        buffer_size: int = 1,
    ) -> None:
        if not 0.0 <= breakpoint_percentile <= 100.0:
            raise ConfigError(f"breakpoint_percentile must be between 0 and 100, not {breakpoint_percentile}.")
        if buffer_size < 0:
            raise ConfigError("buffer_size must be >= 0.")
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)
        self.chunk_size = chunk_size
        self.embedder = embedder
        self.breakpoint_percentile = breakpoint_percentile
        self.buffer_size = buffer_size

    def split(self, document: Document) -> list[Chunk]:
        self._require_embedder()
        text = document.text
        units = self._units(document)
        if not units:
            return []
        groups = self._groups(text, units)
        index = TokenIndex(text, self._recursive.counter)
        spans: list[Span] = []
        for start, end in groups:
            if index.count(start, end) <= self.chunk_size:
                spans.append((start, end))
            else:
                spans.extend(self._recursive.split_spans(text, start, end, index, document.blocks))
        return spans_to_chunks(document, spans)

    def breakpoints(self, texts: list[str]) -> list[int]:
        """Indices ``i`` such that a new group starts at ``texts[i]``, from the distances between neighbours."""
        embedder = self._require_embedder()
        if len(texts) < 2:
            return []
        # Each sentence is encoded once; a gap is scored by the sentences on either side of it, averaged, so
        # one short sentence ("Yes.") cannot fake a topic change and the windows never straddle the gap.
        vectors = np.asarray(embedder.encode_documents(texts), dtype=np.float64)
        sums = np.vstack([np.zeros((1, vectors.shape[1])), np.cumsum(vectors, axis=0)])
        n, width = len(texts), self.buffer_size + 1
        gaps = np.arange(1, n)  # a gap sits before texts[i]
        before = sums[gaps] - sums[np.maximum(gaps - width, 0)]
        after = sums[np.minimum(gaps + width, n)] - sums[gaps]
        norms = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
        norms[norms == 0] = 1.0
        distances = 1.0 - np.einsum("ij,ij->i", before, after) / norms
        threshold = float(np.percentile(distances, self.breakpoint_percentile))
        return [int(gap) for gap, distance in zip(gaps, distances, strict=True) if distance > threshold]

    def _require_embedder(self) -> Embedder:
        if self.embedder is None:
            raise ConfigError(
                "the semantic chunker needs an embedder to compare sentences — pass embedder= to "
                "SemanticChunker or make_chunker (ingestion passes the knowledge base's own)"
            )
        return self.embedder

    def _units(self, document: Document) -> list[Span]:
        """Sentences of the prose blocks, and whole table and code blocks, in document order."""
        text = document.text
        if not document.blocks:
            return split_sentences(text)
        units: list[Span] = []
        for block in document.blocks:
            if block.type in (BlockType.TABLE, BlockType.CODE):
                units.append((block.start, block.end))
            else:
                units.extend(split_sentences(text, block.start, block.end))
        return units

    def _groups(self, text: str, units: list[Span]) -> list[Span]:
        cuts = self.breakpoints([text[s:e] for s, e in units])
        log.debug("semantic chunking: %d units, %d breakpoints", len(units), len(cuts))
        bounds = [0, *cuts, len(units)]
        # A group runs up to the start of the next one, so the text between sentences is never dropped.
        return [
            (units[a][0], units[b][0] if b < len(units) else units[-1][1])
            for a, b in zip(bounds, bounds[1:], strict=False)
            if a < b
        ]
