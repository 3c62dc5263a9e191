"""The chunker registry: every strategy keeps exact offsets, and 'auto' picks by source type and by content."""

from __future__ import annotations

import importlib.util
import zlib

import numpy as np
import pytest
from test_chunk_legal import EN_LAW, ZH_LAW
from test_chunk_paper import EN_PAPER, ZH_PAPER

from ragtune.chunk import factory
from ragtune.chunk.factory import CHUNKERS, chunker_class, chunker_name_for, make_chunker
from ragtune.errors import ConfigError
from ragtune.types import Block, BlockType, Document

pytestmark = pytest.mark.unit

EN_TEXT = (
    "Rotate the API keys every 90 days, e.g. on the first Monday of the quarter. Dr. Lee owns the vault.\n\n"
    "| Key | Owner | Rotation |\n| --- | --- | --- |\n| api | Lee | 90 days |\n| db | Chen | 30 days |\n\n"
    "Backups run nightly at 02:00. A backup is kept for 3.5 weeks! Restores are tested monthly?\n\n"
    + " ".join(f"Step {i} of the runbook checks the service and logs the result." for i in range(30))
)
ZH_TEXT = (
    "全职员工每年享有二十天带薪年假。病假每年最多十五天，需要医院证明！\n\n"
    "| 假期 | 天数 |\n| --- | --- |\n| 年假 | 20 |\n| 病假 | 15 |\n\n"
    + "".join(f"第{i}步：检查服务状态并记录结果。" for i in range(40))
)


class _HashEmbedder:
    """Deterministic stand-in vectors: offsets do not depend on what the vectors mean."""

    name, dim = "hash", 8

    def encode_documents(self, texts):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(-1, self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _blocks(text: str) -> list[Block]:
    return [Block(type=BlockType.TABLE if p.startswith("|") else BlockType.PARAGRAPH, text=p)
            for p in text.split("\n\n")]


def _installed(name: str) -> bool:
    return importlib.util.find_spec(CHUNKERS[name].partition(":")[0]) is not None


@pytest.mark.parametrize("name", list(CHUNKERS))
@pytest.mark.parametrize(("text", "language"), [(EN_TEXT, "en"), (ZH_TEXT, "zh")])
def test_every_chunker_maps_offsets_back_exactly(name, text, language):
    if not _installed(name):
        pytest.skip(f"{CHUNKERS[name].partition(':')[0]} is not present yet")
    doc = Document.assemble(_blocks(text), source=f"mem.{language}.txt", source_type="txt", language=language)
    chunker = make_chunker(name, chunk_size=48, chunk_overlap=8, embedder=_HashEmbedder())
    chunks = chunker.split(doc)
    assert chunks
    for i, chunk in enumerate(chunks):
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.meta.chunk_index == i
        assert chunk.meta.source == doc.source


@pytest.mark.parametrize(
    ("source_type", "expected"),
    [("md", "markdown"), ("html", "markdown"), ("docx", "markdown"), ("epub", "markdown"), ("pptx", "slide"),
     ("xlsx", "table"), ("csv", "table"), ("txt", "recursive"), ("pdf", "recursive"), ("code", "code"),
     ("qa", "qa")],
)
def test_auto_picks_by_source_type(source_type, expected):
    if not _installed(expected):
        expected = "recursive"  # a strategy whose module is missing falls back
    assert chunker_name_for("auto", source_type) == expected


def _plain(text: str, source_type: str) -> Document:
    return Document.assemble([Block(type=BlockType.PARAGRAPH, text=p) for p in text.split("\n\n")],
                             source=f"f.{source_type}", source_type=source_type)


@pytest.mark.parametrize("source_type", ["txt", "pdf", "docx"])
def test_auto_sniffs_legal_and_paper_content_in_generic_formats(source_type):
    assert chunker_name_for("auto", source_type, _plain(ZH_LAW, source_type)) == "legal"
    assert chunker_name_for("auto", source_type, _plain(EN_LAW, source_type)) == "legal"
    assert chunker_name_for("auto", source_type, _plain(EN_PAPER, source_type)) == "paper"
    assert chunker_name_for("auto", source_type, _plain(ZH_PAPER, source_type)) == "paper"
    plain = _plain("A memo.\n\nArticle 1 is mentioned once. Section 2 as well.", source_type)
    assert chunker_name_for("auto", source_type, plain) == ("markdown" if source_type == "docx" else "recursive")


def test_auto_does_not_sniff_structured_formats_and_explicit_names_win():
    assert chunker_name_for("auto", "md", _plain(ZH_LAW, "md")) == "markdown"
    assert chunker_name_for("recursive", "txt", _plain(ZH_LAW, "txt")) == "recursive"
    assert chunker_name_for("legal", "md") == "legal"


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ConfigError, match="unknown chunker 'semantik' — choose one of: auto, token, .*semantic"):
        chunker_name_for("semantik", "txt")
    with pytest.raises(ConfigError, match="unknown chunker"):
        make_chunker("semantik", chunk_size=10, chunk_overlap=0)


def test_a_missing_strategy_module_falls_back_and_fails_clearly(monkeypatch):
    monkeypatch.setitem(CHUNKERS, "code", "ragtune.chunk.not_written_yet:CodeChunker")
    factory._available.cache_clear()
    try:
        assert chunker_name_for("auto", "code") == "recursive"
        with pytest.raises(ConfigError, match="not available"):
            chunker_class("code")
    finally:
        factory._available.cache_clear()


def test_every_registered_strategy_builds_with_the_common_arguments():
    for name in CHUNKERS:
        if _installed(name):
            chunker = make_chunker(name, chunk_size=64, chunk_overlap=8)
            assert callable(chunker.split)
