"""Answer-fixture sources for the rag unit tests: the invented handbook of tests/fixtures/answers, no models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from answer_helpers import hit

from ragtune.rag.sources import Source

ANSWERS = Path(__file__).resolve().parents[1] / "fixtures" / "answers"


@pytest.fixture(scope="session")
def doc_source() -> Callable[..., Source]:
    """A numbered source holding one fixture document whole."""

    def make(name: str, number: int = 1) -> Source:
        return Source(number, [hit(name, (ANSWERS / "docs" / name).read_text(encoding="utf-8"))])

    return make


@pytest.fixture(scope="session")
def planted() -> list[dict]:
    return json.loads((ANSWERS / "planted.json").read_text(encoding="utf-8"))["items"]
