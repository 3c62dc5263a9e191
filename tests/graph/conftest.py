"""Shared graph-test setup: one entity extractor (spaCy loads once) and the two-hop fixture."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graph_fixtures import TWOHOP


@pytest.fixture(scope="session")
def extractor():
    from ragtune.graph import EntityExtractor

    return EntityExtractor()


@pytest.fixture(scope="session")
def twohop_questions() -> list[dict[str, Any]]:
    return json.loads((TWOHOP / "questions.json").read_text(encoding="utf-8"))
