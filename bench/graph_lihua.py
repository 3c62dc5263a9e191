"""LiHua-World: evidence recall@5/@10 per question type for hybrid, graph and auto retrieval."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR  # noqa: E402

LIHUA_DIR = Path(os.environ.get("RAGTUNE_LIHUA") or BENCH_DIR.parent.parent / "shared" / "data" / "lihua-world")


def lihua_questions() -> list[dict[str, Any]]:
    """The 319 dev questions (id, question, answer, type Single/Multi/Null, evidence file names)."""
    with open(LIHUA_DIR / "questions-dev.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
