"""The ONNX Runtime embedder: export at first use, outputs close to torch's, cached, re-exported on new weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragtune.embed import checkpoint_hash, load_embedder
from ragtune.embed.onnx import OnnxExport, export_onnx
from ragtune.errors import ConfigError

TEXTS = ["  API keys rotate every 90 days. ", "The canteen serves lunch at noon.", "全职员工每年享有二十天带薪年假。",
         "vitamin D " * 200, "x"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer sentence-transformers model with MiniLM's tokenizer and random weights: cheap to export."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ragtune.embed.sentence_transformers import resolve_model

    source = resolve_model("all-MiniLM-L6-v2")
    base = tmp_path_factory.mktemp("tiny") / "base"
    config = AutoConfig.from_pretrained(source, num_hidden_layers=1)
    AutoModel.from_config(config).save_pretrained(base)
    AutoTokenizer.from_pretrained(source).save_pretrained(base)
    transformer = models.Transformer(str(base), max_seq_length=128)
    st = SentenceTransformer(modules=[transformer, models.Pooling(transformer.get_embedding_dimension()),
                                      models.Normalize()], device="cpu")
    out = base.parent / "tiny-st"
    st.save(str(out))
    return out


@pytest.fixture(scope="module")
def minilm_export(cache: Path) -> OnnxExport:
    from ragtune.embed.sentence_transformers import resolve_model

    return export_onnx(resolve_model("all-MiniLM-L6-v2"), checkpoint_hash("all-MiniLM-L6-v2"), cache_dir=cache)


@pytest.mark.integration
@pytest.mark.slow
def test_bundled_minilm_exports_close_to_torch_and_int8_is_chosen(minilm_export, monkeypatch, cache):
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")  # exact ONNX fp32 documents (tests/embed/test_bf16.py: bf16)
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "1")  # int8 dot products: 'auto' takes int8 where it keeps quality
    torch_vectors = load_embedder("all-MiniLM-L6-v2", backend="torch").encode_documents(TEXTS)
    fp32 = load_embedder("all-MiniLM-L6-v2", precision="fp32")
    assert fp32.backend == "onnx" and fp32.precision == "fp32"
    assert np.abs(fp32.encode_documents(TEXTS) - torch_vectors).max() < 1e-4
    auto = load_embedder("all-MiniLM-L6-v2")
    assert minilm_export.int8_ok and auto.precision == "int8" and auto.backend == "onnx"
    int8 = auto.encode_documents(TEXTS)
    cosines = np.sum(int8 * torch_vectors, axis=1)
    # 0.995 with VNNI or AMX; without them ONNX Runtime's 16-bit sums saturate a little (0.990 on AVX2).
    assert cosines.mean() > 0.985 and cosines.min() > 0.97
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    # Queries: the same model, and a related passage ranks first.
    query = auto.encode_queries(["how often do keys rotate"])[0]
    assert int(np.argmax(int8 @ query)) == 0


@pytest.mark.integration
def test_int8_vectors_do_not_depend_on_the_batch(minilm_export, monkeypatch, cache):
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))
    int8 = load_embedder("all-MiniLM-L6-v2", precision="int8")
    together = int8.encode_documents(TEXTS)
    alone = np.vstack([int8.encode_documents([t]) for t in TEXTS])
    assert np.array_equal(together, alone)


@pytest.mark.integration
def test_fp32_batches_hold_at_most_batch_tokens_padded_tokens(minilm_export, monkeypatch, cache):
    """Long texts go one or two per call, short ones many: fewer padded tokens per call than BATCH_TOKENS (wider
    calls are slower per text on a CPU), never more texts than the batch size, and the same vectors."""
    from ragtune.embed import onnx

    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    fp32 = load_embedder("all-MiniLM-L6-v2", precision="fp32", batch_size=8)
    session = fp32._runner.session
    shapes: list[tuple[int, int]] = []

    class Recording:
        def run(self, names, feeds):
            shapes.append(feeds["input_ids"].shape)
            return session.run(names, feeds)

    texts = ["vitamin D deficiency " * 60] * 3 + ["short question about keys"] * 30
    expected = np.vstack([fp32.encode_documents([t]) for t in texts])
    monkeypatch.setattr(fp32._runner, "session", Recording())
    together = fp32.encode_documents(texts)
    assert np.abs(together - expected).max() < 1e-5
    assert all(rows * width <= onnx.BATCH_TOKENS or rows == 1 for rows, width in shapes)
    assert max(rows for rows, _ in shapes) == 8  # short texts fill the batch size
    assert shapes[0][0] < 8 and sum(rows for rows, _ in shapes) == len(texts)


@pytest.mark.integration
def test_token_counts_match_the_torch_tokenizer(minilm_export, monkeypatch, cache):
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))
    onnx = load_embedder("all-MiniLM-L6-v2", precision="fp32").token_counter()
    torch_counter = load_embedder("all-MiniLM-L6-v2", backend="torch").token_counter()
    for text in TEXTS:
        assert onnx.spans(text) == torch_counter.spans(text)


@pytest.mark.integration
def test_export_is_cached_and_redone_when_the_weights_change(tiny_model, cache, monkeypatch):
    from safetensors.torch import load_file, save_file

    import ragtune.embed.onnx as onnx_module

    first = export_onnx(tiny_model, checkpoint_hash(str(tiny_model)), cache_dir=cache)
    vectors = load_embedder(str(tiny_model), backend="onnx", precision="fp32").encode_documents(TEXTS)

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the weights did not change")

    monkeypatch.setattr(onnx_module, "_export_embedder", no_export)
    assert export_onnx(tiny_model, checkpoint_hash(str(tiny_model)), cache_dir=cache) == first
    monkeypatch.undo()

    weights = tiny_model / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("dense.weight"))
    tensors[name] = tensors[name] * 1.5
    save_file(tensors, str(weights), metadata={"format": "pt"})
    second = export_onnx(tiny_model, checkpoint_hash(str(tiny_model)), cache_dir=cache)
    assert second.directory != first.directory and second.checkpoint != first.checkpoint
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))
    retrained = load_embedder(str(tiny_model), backend="onnx", precision="fp32")
    assert retrained.export.directory == second.directory
    changed = retrained.encode_documents(TEXTS)
    assert not np.allclose(changed, vectors, atol=1e-3)
    torch_vectors = load_embedder(str(tiny_model), backend="torch").encode_documents(TEXTS)
    assert np.abs(changed - torch_vectors).max() < 1e-4


@pytest.mark.integration
def test_backend_and_precision_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="needs embed_backend 'onnx'"):
        load_embedder("all-MiniLM-L6-v2", backend="torch", precision="int8")
    with pytest.raises(ConfigError, match="local directory"):
        load_embedder("sentence-transformers/some-hub-model", backend="onnx")
    with pytest.raises(ConfigError, match="leave embed_backend"):
        load_embedder("multilingual-e5-small", precision="int8")


@pytest.mark.unit
@pytest.mark.parametrize(("mean", "low", "ok"), [(0.994, 0.984, True), (0.937, 0.908, False), (0.995, 0.95, False)])
def test_int8_is_chosen_only_when_it_follows_fp32(mean, low, ok):
    export = OnnxExport(directory="d", source="s", checkpoint="c", dim=8, max_seq_length=16, do_lower_case=False,
                        inputs=("input_ids",), pad_id=0, int8_mean_agreement=mean, int8_min_agreement=low,
                        fp32_max_abs_diff=0.0)
    assert export.int8_ok is ok


@pytest.mark.unit
@pytest.mark.parametrize(("flags", "machine", "fast"), [
    ("fpu sse4_2 avx2 fma", "x86_64", False),              # AMD EPYC (Zen 2/3), Intel before Cascade Lake
    ("fpu avx2 avx512f avx512_vnni", "x86_64", True),      # Intel Xeon since Cascade Lake, AMD Zen 4
    ("fpu avx2 avx_vnni", "x86_64", True),                 # Intel Alder Lake
    ("fp asimd asimddp", "aarch64", True),                 # Arm with dotprod (Graviton 2 and later)
    ("fp asimd", "aarch64", False),
    (None, "arm64", True),                                 # no /proc/cpuinfo: macOS on Apple silicon
])
def test_fast_int8_follows_the_cpu_flags_and_the_switch(monkeypatch, flags, machine, fast):
    from ragtune.embed import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: None if flags is None else frozenset(flags.split()))
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.delenv("RAGTUNE_CPU_INT8", raising=False)
    assert cpu.cpu_has_fast_int8() is fast
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "0" if fast else "1")
    assert cpu.cpu_has_fast_int8() is not fast


@pytest.mark.unit
def test_auto_precision_takes_int8_only_where_it_keeps_quality_and_the_cpu_runs_it_fast(monkeypatch):
    from ragtune.embed.onnx import choose_precision

    def export(mean: float) -> OnnxExport:
        return OnnxExport(directory="d", source="s", checkpoint="c", dim=8, max_seq_length=16, do_lower_case=False,
                          inputs=("input_ids",), pad_id=0, int8_mean_agreement=mean, int8_min_agreement=0.99,
                          fp32_max_abs_diff=0.0)

    monkeypatch.setenv("RAGTUNE_CPU_INT8", "1")
    assert choose_precision(export(0.995), "auto") == "int8"
    assert choose_precision(export(0.95), "auto") == "fp32"
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "0")
    assert choose_precision(export(0.995), "auto") == "fp32"
    assert choose_precision(export(0.995), "int8") == "int8"  # asked for: given, whatever the CPU


@pytest.mark.integration
def test_without_fast_int8_auto_encodes_in_fp32_and_int8_stays_available(minilm_export, monkeypatch, cache):
    monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(cache))
    monkeypatch.setenv("RAGTUNE_CPU_BF16", "0")
    monkeypatch.setenv("RAGTUNE_CPU_INT8", "0")
    auto = load_embedder("all-MiniLM-L6-v2")
    fp32 = load_embedder("all-MiniLM-L6-v2", precision="fp32")
    assert (auto.backend, auto.precision) == ("onnx", "fp32")
    assert np.array_equal(auto.encode_documents(TEXTS), fp32.encode_documents(TEXTS))
    assert load_embedder("all-MiniLM-L6-v2", precision="int8").precision == "int8"
