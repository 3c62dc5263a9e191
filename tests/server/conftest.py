"""Server fixtures: a fake extractive LLM over HTTP, a knowledge-base root, and the real app under uvicorn."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import EXAMPLES, RunningServer, fake_llm_server, running_server

from ragtune.kb import KnowledgeBase


@pytest.fixture(scope="session")
def fake_llm_url() -> Iterator[str]:
    yield from fake_llm_server()


@pytest.fixture(scope="session")
def handbook_root(tmp_path_factory, embedder) -> Path:
    """A KB root with one ingested knowledge base, 'handbook', built once and copied per server."""
    root = tmp_path_factory.mktemp("kbs-template")
    with KnowledgeBase.open(root / "handbook", create=True, embedder=embedder) as kb:
        assert kb.ingest(EXAMPLES / "handbook").ok
    return root


@pytest.fixture(scope="module")
def live(tmp_path_factory, handbook_root, embedder, fake_llm_url) -> Iterator[RunningServer]:
    """The real app under uvicorn on a free loopback port, serving a copy of the handbook KB root."""
    root = tmp_path_factory.mktemp("kbs")
    shutil.copytree(handbook_root, root, dirs_exist_ok=True)
    yield from running_server(root, embedder, fake_llm_url, max_upload_bytes=2 * 1024 * 1024,
                              max_archive_bytes=4 * 1024 * 1024)
