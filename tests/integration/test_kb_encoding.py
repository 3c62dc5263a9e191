"""A knowledge base remembers how its chunks were encoded (precision, chunk context) and never mixes two."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ragtune.errors import ConfigError, EmbedderMismatchError
from ragtune.kb import KnowledgeBase
from ragtune.store.local import chunk_tokens
from ragtune.types import Block, BlockType, Chunk, ChunkMeta, Document, embedding_text

TITLE = "Security handbook"


def _documents() -> list[tuple[str, Document]]:
    paragraphs = ["API keys must be rotated every 90 days by the owning team. " * 6,
                  "Lost laptops are reported to the help desk within one hour. " * 6]
    blocks = [Block(type=BlockType.HEADING, text=TITLE, level=1, heading_path=[TITLE])]
    blocks += [Block(type=BlockType.PARAGRAPH, text=p, heading_path=[TITLE]) for p in paragraphs]
    other = [Block(type=BlockType.PARAGRAPH, text="The canteen serves lunch from noon to two on weekdays.")]
    return [("test:security", Document.assemble(blocks, source="test:security", source_type="md", title=TITLE)),
            ("test:canteen", Document.assemble(other, source="test:canteen", source_type="txt", title="Canteen"))]


def _rows(path: Path) -> list[tuple[str, str, str, bytes]]:
    with sqlite3.connect(path / "ragtune.db") as db:
        return db.execute("SELECT text, meta, tokens, vector FROM chunks ORDER BY id").fetchall()


def _build(path: Path, **settings: object) -> dict:
    with KnowledgeBase.open(path, create=True, chunk_size=48, chunk_overlap=8, **settings) as kb:
        kb.ingest_documents(_documents())
        return kb.stats()


@pytest.fixture
def fresh_embedders():
    """Knowledge bases in one process share loaded embedders; a test that changes what 'auto' chooses must not
    get one loaded before it, nor leave its own to the tests after it."""
    from ragtune.kb import _shared_embedder

    _shared_embedder.cache_clear()
    yield
    _shared_embedder.cache_clear()


@pytest.mark.integration
def test_a_new_kb_records_int8_and_chunk_context_and_embeds_with_them(tmp_path, monkeypatch, fresh_embedders):
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")  # whatever the CPU: no embedder loaded with bf16 documents
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "1")  # a CPU with int8 dot products (VNNI, AMX, Arm dotprod)
    stats = _build(tmp_path / "kb")
    assert stats["embedder_precision"] == "int8" and stats["chunk_context"] == 1
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.embedder.precision == "int8"
        rows = _rows(kb.path)
        later = [r for r in rows if not r[0].startswith(TITLE) and "API keys" in r[0]][0]
        meta = ChunkMeta.model_validate_json(later[1])
        assert meta.document_title == TITLE
        expected = kb.embedder.encode_documents([f"{TITLE}\n{later[0]}"])[0]
        assert np.array_equal(np.frombuffer(later[3], dtype=np.float32), expected)
        assert later[2].split().count("secur") == 2  # the title, counted twice as a header field
        assert kb.search("how often are API keys rotated", k=1)[0].document_id


@pytest.mark.integration
def test_precision_is_kept_and_a_different_one_is_an_error_naming_reembed(tmp_path):
    _build(tmp_path / "kb", embed_precision="fp32")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.embedder.precision == "fp32" and kb.settings.embed_precision == "fp32"
        before = [h.chunk_id for h in kb.search("lost laptop", k=3)]
    with pytest.raises(EmbedderMismatchError, match="kb reembed --kb .* --precision int8"):
        KnowledgeBase.open(tmp_path / "kb", embed_precision="int8")
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        report = kb.reembed(precision="int8")
        assert report["precision"] == "int8" and report["chunks"] == kb.stats()["chunks"]
        assert kb.embedder.precision == "int8"
        vectors = [np.frombuffer(r[3], dtype=np.float32) for r in _rows(kb.path)]
        texts = [embedding_text(r[0], ChunkMeta.model_validate_json(r[1]), 1) for r in _rows(kb.path)]
        assert np.array_equal(np.vstack(vectors), kb.embedder.encode_documents(texts))
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.stats()["embedder_precision"] == "int8" and kb.embedder.precision == "int8"
        assert [h.chunk_id for h in kb.search("lost laptop", k=3)][0] == before[0]


@pytest.mark.integration
def test_a_kb_from_before_the_records_stays_fp32_without_context(tmp_path):
    path = tmp_path / "kb"
    _build(path, embed_precision="fp32", chunk_context=False)
    with sqlite3.connect(path / "ragtune.db") as db:  # as a KB made before this change looks
        db.execute("DELETE FROM meta WHERE key IN ('embedder_precision', 'chunk_context')")
    with KnowledgeBase.open(path) as kb:
        assert kb.settings.embed_precision == "fp32" and kb.store.chunk_context == 0
        assert kb.embedder.precision == "fp32"
        extra = [Block(type=BlockType.HEADING, text="Parking", level=1, heading_path=["Parking"]),
                 Block(type=BlockType.PARAGRAPH, text="Visitors park on level two.", heading_path=["Parking"])]
        kb.ingest_documents([("test:parking", Document.assemble(extra, source="test:parking", source_type="md",
                                                                 title="Parking rules"))])
        text, meta, tokens, vector = _rows(path)[-1]
        chunk = Chunk(text=text, start=0, end=len(text), meta=ChunkMeta.model_validate_json(meta))
        assert tokens.split() == chunk_tokens(chunk, 0)
        assert np.array_equal(np.frombuffer(vector, dtype=np.float32), kb.embedder.encode_documents([text])[0])
    with pytest.raises(ConfigError, match="chunk_context = false"):
        KnowledgeBase.open(path, chunk_context=True)


@pytest.mark.e2e
def test_cli_reembeds_to_another_precision_and_adapt_needs_enough_chunks(tmp_path):
    import json

    from typer.testing import CliRunner

    from ragtune.cli import app

    path = tmp_path / "kb"
    _build(path, embed_precision="fp32")
    runner = CliRunner()
    nothing = runner.invoke(app, ["kb", "reembed", "--kb", str(path), "--json"])
    assert nothing.exit_code == 1 and "--precision" in json.loads(nothing.stdout)["error"]
    done = runner.invoke(app, ["kb", "reembed", "--kb", str(path), "--precision", "int8", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["precision"] == "int8" and report["previous_embedder"] == report["embedder"]
    stats = json.loads(runner.invoke(app, ["kb", "stats", "--kb", str(path), "--json"]).stdout)
    assert stats["embedder_precision"] == "int8"
    small = runner.invoke(app, ["kb", "adapt", "--kb", str(path), "--budget", "0.5", "--json"])
    assert small.exit_code == 1 and "ingest more documents" in json.loads(small.stdout)["error"]


@pytest.mark.integration
def test_on_an_amx_cpu_an_fp32_kb_gets_bf16_documents_and_opens_anywhere(tmp_path, monkeypatch, fresh_embedders):
    import ragtune.embed.bf16 as bf16
    import ragtune.embed.factory as factory
    from ragtune.embed.onnx import OnnxEmbedder
    from ragtune.kb import _shared_embedder

    monkeypatch.setattr(factory, "cpu_has_amx_bf16", lambda: True)  # bf16 is emulated (slowly) elsewhere
    monkeypatch.setattr(bf16, "BF16_MIN_TEXTS", 1)  # the fixture's few chunks go to bf16 as a large ingest would
    stats = _build(tmp_path / "kb", embed_precision="fp32")
    assert stats["embedder_precision"] == "fp32"
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.embedder.describe()["documents"].startswith("bf16")
        rows = _rows(kb.path)
        texts = [embedding_text(r[0], ChunkMeta.model_validate_json(r[1]), 1) for r in rows]
        stored = np.vstack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
        assert np.array_equal(stored, kb.embedder.encode_documents(texts))
        assert isinstance(kb.embedder, OnnxEmbedder)
        exact = kb.embedder._encode(texts, "")  # ONNX fp32, as a CPU without AMX encodes them
        assert not np.array_equal(stored, exact) and np.sum(stored * exact, axis=1).min() > 0.9995
        top = kb.search("how often are API keys rotated", k=1)[0].chunk_id
    monkeypatch.setattr(factory, "cpu_has_amx_bf16", lambda: False)
    _shared_embedder.cache_clear()
    with KnowledgeBase.open(tmp_path / "kb") as kb:  # the same KB on a CPU without AMX: fp32 ONNX, no mismatch
        assert kb.embedder.precision == "fp32" and "documents" not in kb.embedder.describe()
        assert kb.search("how often are API keys rotated", k=1)[0].chunk_id == top


@pytest.mark.integration
def test_on_a_cpu_without_int8_dot_products_a_new_kb_records_fp32_and_keeps_it(tmp_path, monkeypatch,
                                                                                fresh_embedders):
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "0")
    stats = _build(tmp_path / "kb")
    assert stats["embedder_precision"] == "fp32"
    # The KB keeps the precision it was built with, wherever it is opened next.
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "1")
    from ragtune.kb import _shared_embedder

    _shared_embedder.cache_clear()
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.embedder.precision == "fp32"
        assert kb.search("how often do API keys rotate", k=1)
