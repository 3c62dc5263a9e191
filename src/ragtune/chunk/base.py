"""What every chunker shares: the Chunker protocol and turning character spans into Chunks with metadata."""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ragtune.chunk.tags import DEFAULT_TAG_COUNT, extract_tags
from ragtune.text import WORD_OR_HAN_RE
from ragtune.types import Block, BlockType, Chunk, ChunkMeta, Document

# The rule under a Markdown table's header row: "| --- | :-: |".
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")


class Chunker(Protocol):
    """Splits a document into chunks whose text is an exact slice of the document text."""

    def split(self, document: Document) -> list[Chunk]: ...


def word_count(text: str) -> int:
    """Words, counting each CJK character as one (the usual convention for Chinese)."""
    return len(WORD_OR_HAN_RE.findall(text))


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) so it neither starts nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def spans_to_chunks(
    document: Document,
    spans: Sequence[tuple[int, int]],
    metadata: Sequence[Mapping[str, Any]] | None = None,
    *,
    tag_count: int = DEFAULT_TAG_COUNT,
) -> list[Chunk]:
    """Chunks for the given spans, each with metadata taken from the blocks it overlaps.

    ``metadata``, when given, holds one mapping of ChunkMeta fields per span that overrides what the blocks
    say (a legal chunker's clause id and heading path, for instance). Every chunk gets ``tag_count`` keyword
    tags, ranked against the document's other chunks.
    """
    if metadata is not None and len(metadata) != len(spans):
        raise ValueError(f"{len(spans)} spans but {len(metadata)} metadata entries")
    blocks = document.blocks
    block_starts = [b.start for b in blocks]
    chunks: list[Chunk] = []
    for n, (raw_start, raw_end) in enumerate(spans):
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
            table_header=table_header_for(document, start, end),
            is_ocr=any(b.is_ocr for b in covered),
        )
        if metadata is not None and metadata[n]:
            meta = meta.model_copy(update=dict(metadata[n]))
        chunks.append(Chunk(text=text, start=start, end=end, meta=meta))
    for chunk, tags in zip(chunks, extract_tags([c.text for c in chunks], tag_count), strict=True):
        chunk.meta.tags = tags
    return chunks


def table_header_for(document: Document, start: int, end: int) -> str | None:
    """The header row and separator of the Markdown table a chunk starts inside, when the chunk lacks them.

    A table too long for one chunk is cut between rows, and only its first piece shows the column names. The
    chunk text must stay an exact slice of the document, so the header cannot be copied into it; callers
    that embed or display a later piece put this header in front of it instead. None when the chunk starts
    outside a table or at its header.
    """
    blocks = document.blocks
    covered = _overlapping(blocks, [b.start for b in blocks], start, end)
    table = next((b for b in covered if b.type == BlockType.TABLE), None)
    if table is None or start <= table.start:
        return None
    lines = document.text[table.start : table.end].split("\n", 2)
    if len(lines) < 2 or not _TABLE_RULE.match(lines[1]):
        return None
    header_end = table.start + len(lines[0]) + 1 + len(lines[1])
    if start < header_end:
        return None
    return f"{lines[0]}\n{lines[1]}"


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
