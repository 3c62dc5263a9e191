"""Shared graph-test setup: one entity extractor (spaCy loads once) and the two-hop fixture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
TWOHOP = FIXTURES / "twohop"


@pytest.fixture(scope="session")
def extractor():
    from ragtune.graph import EntityExtractor

    return EntityExtractor()


@pytest.fixture(scope="session")
def twohop_questions() -> list[dict[str, Any]]:
    return json.loads((TWOHOP / "questions.json").read_text(encoding="utf-8"))
