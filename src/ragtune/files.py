"""Files replaced atomically: written under a temporary name, synced, then renamed over the old one, so a crash
leaves either the old content or the new, never a torn file (resume records, KB pointers, caches)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json"]


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename, after the bytes are on disk."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename, after the bytes are on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique per writer
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write failed
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """``data`` as JSON (UTF-8, non-ASCII kept, values JSON cannot hold written as strings), atomically."""
    atomic_write(path, json.dumps(data, ensure_ascii=False, indent=indent, default=str) + "\n")
