"""Where the graph tests' fixture files are (a module of its own: conftest names collide across test folders)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
TWOHOP = FIXTURES / "twohop"
