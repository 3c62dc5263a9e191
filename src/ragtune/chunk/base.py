"""What every chunker shares: the Chunker protocol and turning character spans into Chunks with metadata."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Protocol

from ragtune.types import Block, BlockType, Chunk, ChunkMeta, Document

_WORD_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[^\W_]+", re.UNICODE)


class Chunker(Protocol):
    """Splits a document into chunks whose text is an exact slice of the document text."""

    def split(self, document: Document) -> list[Chunk]: ...


def word_count(text: str) -> int:
    """Words, counting each CJK character as one (the usual convention for Chinese)."""
    return len(_WORD_RE.findall(text))


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) so it neither starts nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def spans_to_chunks(document: Document, spans: Sequence[tuple[int, int]]) -> list[Chunk]:
    """Chunks for the given spans, each with metadata taken from the blocks it overlaps."""
    blocks = document.blocks
    block_starts = [b.start for b in blocks]
    chunks: list[Chunk] = []
    for raw_start, raw_end in spans:
        start, end = trim_span(document.text, raw_start, raw_end)
        if start >= end:
            continue
        covered = _overlapping(blocks, block_starts, start, end)
        first = covered[0] if covered else None
        heading_path = list(first.heading_path) if first else []
        tables = [b for b in covered if b.type == BlockType.TABLE and b.caption]
        text = document.text[start:end]
        meta = ChunkMeta(
            source=document.source,
            source_type=document.source_type,
            chunk_index=len(chunks),
            page_number=first.page_number if first else None,
            section_title=heading_path[-1] if heading_path else None,
            heading_path=heading_path,
            author=document.author,
            created_at=document.created_at,
            last_modified=document.last_modified,
            word_count=word_count(text),
            language=document.language,
            table_caption=tables[0].caption if tables else None,
            is_ocr=any(b.is_ocr for b in covered),
        )
        chunks.append(Chunk(text=text, start=start, end=end, meta=meta))
    return chunks


def _overlapping(blocks: list[Block], starts: list[int], start: int, end: int) -> list[Block]:
    if not blocks:
        return []
    i = max(0, bisect.bisect_right(starts, start) - 1)
    out = []
    while i < len(blocks) and blocks[i].start < end:
        if blocks[i].end > start:
            out.append(blocks[i])
        i += 1
    return out
