"""bf16 document encoding for fp32 embedders on AMX CPUs: fp32's vectors to within rounding, used only where it
keeps them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ragtune.embed.bf16 as bf16
import ragtune.embed.factory as factory
from ragtune.embed import checkpoint_hash, load_embedder
from ragtune.embed.bf16 import Bf16DocumentEncoder, bf16_ok
from ragtune.embed.cpu import cpu_has_amx_bf16
from ragtune.embed.onnx import OnnxEmbedder, OnnxExport, export_onnx
from ragtune.embed.sentence_transformers import resolve_model

TEXTS = ["  API keys rotate every 90 days. ", "The canteen serves lunch at noon.", "全职员工每年享有二十天带薪年假。",
         "vitamin D " * 200, "x", "Restart the ingestion service after changing the configuration file."]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def export(cache: Path) -> OnnxExport:
    return export_onnx(resolve_model("all-MiniLM-L6-v2"), checkpoint_hash("all-MiniLM-L6-v2"), cache_dir=cache)


@pytest.fixture
def amx(monkeypatch: pytest.MonkeyPatch, cache: Path, export: OnnxExport) -> None:
    """This CPU counts as one with AMX (elsewhere torch emulates bf16: slower, the same numbers), with the
    module's own model cache (so bf16.json is written there)."""
    monkeypatch.setattr(factory, "cpu_has_amx_bf16", lambda: True)
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "1")  # CPUs with AMX have its int8 instructions too
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))


@pytest.mark.integration
def test_bf16_vectors_follow_onnx_fp32_in_order_and_normalised(export):
    fp32 = OnnxEmbedder("all-MiniLM-L6-v2", resolve_model("all-MiniLM-L6-v2"), export.checkpoint,
                        precision="fp32", export=export)
    exact = fp32.encode_documents(TEXTS)
    encoder = Bf16DocumentEncoder(resolve_model("all-MiniLM-L6-v2"))
    vectors = encoder.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == exact.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * exact, axis=1)
    assert cosines.min() > 0.9995 and not np.array_equal(vectors, exact)  # bf16 really ran, and kept fp32's vectors
    reversed_ = encoder.encode(TEXTS[::-1])[::-1]  # sorted into length batches inside, returned in input order
    assert np.sum(reversed_ * vectors, axis=1).min() > 0.9999


@pytest.mark.integration
def test_fp32_on_amx_encodes_large_document_batches_in_bf16_and_auto_stays_int8(amx, export, monkeypatch):
    # A "large" batch is made smaller here: emulated bf16 (no AMX on the test CPU) encodes 128 texts in a minute.
    # The threshold itself is checked in test_the_switch_and_the_thresholds.
    monkeypatch.setattr(bf16, "BF16_MIN_TEXTS", 2 * len(TEXTS))
    auto = load_embedder("all-MiniLM-L6-v2")  # int8 is as fast on documents and twice as fast on queries
    assert auto.precision == "int8" and "documents" not in auto.describe()
    embedder = load_embedder("all-MiniLM-L6-v2", precision="fp32")
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.precision == "fp32" and embedder.describe()["documents"] == "bf16 (torch on AMX)"
    record = json.loads((Path(export.directory) / "bf16.json").read_text())
    assert bf16_ok(record) and record["mean"] > 0.9999  # measured once, cached beside the export
    few = embedder.encode_documents(TEXTS)  # too few to pay for loading torch: ONNX fp32, exactly
    assert np.array_equal(few, embedder._encode(TEXTS, ""))
    many = embedder.encode_documents(TEXTS * (bf16.BF16_MIN_TEXTS // len(TEXTS) + 1))
    assert not np.array_equal(many[: len(TEXTS)], few) and np.sum(many[: len(TEXTS)] * few, axis=1).min() > 0.9995
    again = embedder.encode_documents(TEXTS)  # once loaded, every batch is bf16 (padded to its own width)
    assert not np.array_equal(again, few) and np.sum(again * many[: len(TEXTS)], axis=1).min() > 0.9999
    query = embedder.encode_queries(["how often do keys rotate"])  # queries never leave ONNX fp32
    assert np.array_equal(query, embedder._encode(["how often do keys rotate"], ""))


@pytest.mark.integration
def test_bf16_is_not_chosen_for_int8_or_where_it_drifts(amx, export):
    assert "documents" not in load_embedder("all-MiniLM-L6-v2", precision="int8").describe()
    assert "documents" in load_embedder("all-MiniLM-L6-v2", precision="fp32").describe()  # measures, caches
    record = Path(export.directory) / "bf16.json"
    saved = record.read_text()
    record.write_text(json.dumps({**json.loads(saved), "mean": 0.998, "min": 0.99}))  # as a drifting model's
    try:
        drifting = load_embedder("all-MiniLM-L6-v2", precision="fp32")
        assert drifting.precision == "fp32" and "documents" not in drifting.describe()
    finally:
        record.write_text(saved)


@pytest.mark.unit
def test_the_switch_and_the_thresholds(monkeypatch):
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    assert cpu_has_amx_bf16() is False
    assert bf16_ok({"mean": 0.99995, "min": 0.9999}) and not bf16_ok({"mean": 0.9999, "min": 0.998})
    encoder = Bf16DocumentEncoder("unused")
    assert not encoder.worth_it(bf16.BF16_MIN_TEXTS - 1) and encoder.worth_it(bf16.BF16_MIN_TEXTS)
    with pytest.raises(Exception, match="fp32 only"):
        OnnxEmbedder("m", "p", "c", precision="int8", export=None, documents_bf16=True)
