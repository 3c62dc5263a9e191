"""Fixtures of the conformance suite: a fresh store per test, and one filled store per backend per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_cases import BACKENDS, StoreMaker, corpus, store_maker

from ragtune.store.base import ChunkStore
from ragtune.store.local import DocumentUpdate


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    make, opened = store_maker(backend, request, tmp_path)
    yield make
    for store in opened:
        store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[ChunkStore, list[DocumentUpdate]]]:
    """One store per backend holding ``corpus()``, shared by the read-only tests of a module."""
    make, opened = store_maker(str(request.param), request, tmp_path_factory.mktemp(str(request.param)))
    store = make()
    updates = corpus()
    store.apply(updates)
    yield store, updates
    for each in opened:
        each.close()


