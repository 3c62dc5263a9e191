"""Shared test setup: offline models, one thread, and a real embedder shared by the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from engines import milvus_lite_url, milvus_url, postgres_url  # noqa: E402, F401  (database engines, started lazily)
from openai_server import serve  # noqa: E402, F401  (a fixture shared by the LLM and answer tests)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test says what it is: exactly one of the kind markers (``slow`` comes on top)."""
    unmarked = [item.nodeid for item in items if sum(item.get_closest_marker(k) is not None for k in KINDS) != 1]
    if unmarked:
        raise pytest.UsageError(f"mark each test with one of {', '.join(KINDS)}: {', '.join(unmarked[:10])}")


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


#: What a test marked ``unit`` must never do (the marker promises pure logic, fast, no models): the fixture
#: below makes each of these fail the test, naming the marker to use instead.
_HEAVY = {
    "sentence_transformers.SentenceTransformer.__init__": "loads an embedding model",
    "sentence_transformers.CrossEncoder.__init__": "loads a cross-encoder",
    "ragtune.llm.local.LocalLLM.__init__": "loads the local LLM",
    "ragtune.parse.ocr._tesseract": "runs Tesseract",
    "ragtune.parse.ocr._rapidocr": "runs RapidOCR",
}


@pytest.fixture(autouse=True)
def _unit_tests_load_no_models(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("unit") is None:
        return
    if "embedder" in request.fixturenames:
        pytest.fail(f"{request.node.nodeid} is marked unit but uses the real embedder — mark it integration")
    for target, what in _HEAVY.items():
        def refuse(*args: object, _what: str = what, **kwargs: object) -> None:
            raise AssertionError(f"{request.node.nodeid} is marked unit but {_what} — mark it integration")

        monkeypatch.setattr(target, refuse)
