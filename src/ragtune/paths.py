"""Where ragtune keeps files derived from models (converted LLMs, ONNX exports): one cache directory."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Where converted models live: env RAGTUNE_MODEL_CACHE, else ~/.cache/ragtune/models."""
    env = os.environ.get("RAGTUNE_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ragtune" / "models"
