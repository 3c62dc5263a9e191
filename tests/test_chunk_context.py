"""Contextual chunk headers: what a chunk is embedded and BM25-indexed with besides its text."""

from __future__ import annotations

import pytest

from ragtune.store.local import HEADER_BOOST, chunk_tokens
from ragtune.store.text import tokenize
from ragtune.types import Chunk, ChunkMeta, context_header, embedding_text

pytestmark = pytest.mark.unit


def _chunk(text: str, **meta: object) -> Chunk:
    return Chunk(text=text, start=0, end=len(text), meta=ChunkMeta(**meta))


def test_header_is_title_then_heading_path_without_repeats() -> None:
    meta = ChunkMeta(document_title="Staff handbook", heading_path=["Staff handbook", "Security", "Key  rotation"])
    assert context_header(meta) == ["Staff handbook", "Security", "Key rotation"]
    assert context_header(ChunkMeta()) == []


def test_version_0_embeds_the_text_as_before() -> None:
    meta = ChunkMeta(document_title="Handbook", heading_path=["Security"], table_header="| a | b |\n| - | - |")
    assert embedding_text("| 1 | 2 |", meta) == "| a | b |\n| - | - |\n| 1 | 2 |"
    assert embedding_text("| 1 | 2 |", meta, 0) == embedding_text("| 1 | 2 |", meta)


def test_version_1_puts_the_header_parts_the_text_lacks_first() -> None:
    meta = ChunkMeta(document_title="Handbook", heading_path=["Handbook", "Security", "Keys"])
    text = "Rotate keys every 90 days."
    assert embedding_text(text, meta, 1) == f"Handbook > Security > Keys\n{text}"
    # The first chunk of a section starts with its heading: only the outer parts are added.
    assert embedding_text("Keys\n\nRotate them.", meta, 1) == "Handbook > Security\nKeys\n\nRotate them."
    # A chunk that starts with every part (a SciFact abstract's first chunk starts with its title) is unchanged.
    title_only = ChunkMeta(document_title="Vitamin D and fractures", heading_path=["Vitamin D and fractures"])
    first = "Vitamin D and fractures\n\nWe studied"
    assert embedding_text(first, title_only, 1) == first
    assert embedding_text("Later text.", ChunkMeta(), 1) == "Later text."


def test_bm25_tokens_count_the_header_as_a_boosted_field() -> None:
    chunk = _chunk("Rotate every 90 days.", document_title="Handbook", heading_path=["Security"],
                   section_title="Security")
    assert chunk_tokens(chunk, 0) == tokenize("Security\nRotate every 90 days.")
    tokens = chunk_tokens(chunk, 1)
    assert tokens == tokenize("Rotate every 90 days.") + tokenize("Handbook\nSecurity") * HEADER_BOOST
    assert tokens.count("handbook") == HEADER_BOOST
    assert chunk_tokens(chunk, 1, header_boost=1).count("handbook") == 1
