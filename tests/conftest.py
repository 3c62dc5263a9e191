"""Shared test setup: offline models, one thread, and a real embedder shared by the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from openai_server import serve  # noqa: E402, F401  (a fixture shared by the LLM and answer tests)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def pytest_configure(config: pytest.Config) -> None:
    import torch

    # Measured here: small-model suites run several times faster on one thread than on two.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedder():
    """The bundled all-MiniLM-L6-v2, loaded once."""
    from ragtune.embed import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


@pytest.fixture()
def docs_dir(tmp_path: Path) -> Path:
    """A fresh copy of examples/ the test may modify."""
    target = tmp_path / "docs"
    shutil.copytree(EXAMPLES, target)
    return target
