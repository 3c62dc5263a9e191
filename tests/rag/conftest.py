"""Answer-fixture sources for the rag unit tests: the invented handbook of tests/fixtures/answers, no models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ragtune.rag.sources import Source
from ragtune.types import ChunkMeta, Hit

ANSWERS = Path(__file__).resolve().parents[1] / "fixtures" / "answers"


def hit(name: str, text: str, *, chunk: int = 0, heading_path: tuple[str, ...] = (), document: str | None = None
        ) -> Hit:
    return Hit(chunk_id=f"{name}#{chunk}", document_id=document or name, source=f"/docs/{name}", text=text,
               score=1.0 - chunk / 100, meta=ChunkMeta(chunk_index=chunk, heading_path=list(heading_path),
                                                       section_title=heading_path[-1] if heading_path else None))


@pytest.fixture(scope="session")
def doc_source() -> Callable[..., Source]:
    """A numbered source holding one fixture document whole."""

    def make(name: str, number: int = 1) -> Source:
        return Source(number, [hit(name, (ANSWERS / "docs" / name).read_text(encoding="utf-8"))])

    return make


@pytest.fixture(scope="session")
def planted() -> list[dict]:
    return json.loads((ANSWERS / "planted.json").read_text(encoding="utf-8"))["items"]
