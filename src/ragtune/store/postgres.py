"""PostgreSQL plumbing shared by the pgvector store and the server state: URLs, a connection pool, pgvector's
binary format, per-KB schemas and a small SQL facade that runs the same statements on SQLite or Postgres."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import sqlite3
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ragtune.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: The schema of the tables every server and KB on one database shares (the KB registry, API keys, jobs).
SHARED_SCHEMA = "ragtune"
_INSTALL_HINT = "install the 'postgres' extra (pip install 'ragtune[postgres]')"


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def kb_schema(name: str) -> str:
    """The schema of one knowledge base: readable, unique per name and within Postgres' 63-byte identifiers."""
    slug = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:40] or "kb"
    return f"kb_{slug}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock, from names."""
    digest = hashlib.sha1("\x00".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(f"the Postgres store needs psycopg — {_INSTALL_HINT}") from None
    return psycopg


# --- pgvector's binary format (what the `pgvector` Python package would register) ----------------------


def _vector_adapters(conn: psycopg.Connection[Any]) -> None:
    """Send and read ``vector`` values as binary float32 arrays (numpy), not as text."""
    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    found = TypeInfo.fetch(conn, "vector")
    if found is None:
        raise StoreError("the pgvector extension is not installed in this database — run CREATE EXTENSION vector "
                         "as a superuser, or ask your database administrator")
    info = found

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj: Any) -> bytes:
            array = np.asarray(obj, dtype=">f4").ravel()
            return struct.pack(">HH", len(array), 0) + array.tobytes()

    class VectorLoader(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> np.ndarray:
            dim = struct.unpack_from(">H", data)[0]
            return np.frombuffer(bytes(data), dtype=">f4", count=dim, offset=4).astype(np.float32)

    class VectorTextLoader(Loader):
        def load(self, data: Any) -> np.ndarray:
            return np.array(bytes(data).decode()[1:-1].split(","), dtype=np.float32)

    info.register(conn)
    conn.adapters.register_dumper(np.ndarray, VectorDumper)
    conn.adapters.register_loader(info.oid, VectorLoader)
    conn.adapters.register_loader(info.oid, VectorTextLoader)


# --- a small pool ------------------------------------------------------------------------------------


class ConnectionPool:
    """Up to ``size`` autocommit connections to one database, opened on demand and shared by threads.

    Each borrower gets a connection of its own for the duration of a ``with``, so request threads and the
    ingestion worker never interleave statements on one connection.
    """

    def __init__(self, url: str, size: int = 8) -> None:
        self.url = url
        self.size = size
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()
        self._vector = False

    def _open(self) -> psycopg.Connection[Any]:
        psycopg = _psycopg()
        try:
            # The process id in the application name tells an administrator (and pg_stat_activity) whose
            # connection holds a lock, e.g. which server runs an ingestion job.
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=15,
                                   application_name=f"ragtune[{os.getpid()}]")
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to {redact(self.url)} ({str(exc).strip().splitlines()[0]}) — check "
                             "that the server runs and the URL, user and password are right") from None
        # Searches are short queries on indexes: compiling one to machine code (JIT) costs more than it saves.
        conn.execute("SET jit = off")
        if self._vector:
            _vector_adapters(conn)
        return conn

    def enable_vectors(self) -> None:
        """Register pgvector's adapters on every connection (after CREATE EXTENSION vector)."""
        with self._lock:
            if self._vector:
                return
            self._vector = True
            idle = []
            while not self._idle.empty():
                idle.append(self._idle.get_nowait())
        for conn in idle:
            _vector_adapters(conn)
            self._idle.put(conn)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = None
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._opened < self.size
                if grow:
                    self._opened += 1
            if grow:
                try:
                    conn = self._open()
                except BaseException:
                    with self._lock:
                        self._opened -= 1
                    raise
            else:
                conn = self._idle.get(timeout=120)
        try:
            yield conn
        except BaseException:
            if conn.closed or conn.info.transaction_status != 0:  # a broken or unfinished connection is dropped
                self._discard(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                if conn.closed:
                    self._discard(conn)
                else:
                    self._idle.put(conn)

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        finally:
            with self._lock:
                self._opened -= 1

    def close(self) -> None:
        while not self._idle.empty():
            self._discard(self._idle.get_nowait())


_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(url: str) -> ConnectionPool:
    """One pool per database URL in this process, shared by every KB and server table on it."""
    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            pool = _POOLS[url] = ConnectionPool(url)
        return pool


# --- one SQL facade over SQLite and Postgres -----------------------------------------------------------


class Database(Protocol):
    """Where the server's tables (keys, jobs, feedback) live: statements use ``?`` placeholders on both dialects;
    rows come back as mappings by column name."""

    dialect: Literal["sqlite", "postgres"]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]: ...

    def transaction(self) -> Any:
        """A context manager yielding an object with the same ``execute``, all in one transaction."""
        ...

    def close(self) -> None: ...


class SqliteDatabase:
    """A SQLite file (WAL) with its own connection; statements are serialised by a lock."""

    dialect: Literal["sqlite", "postgres"] = "sqlite"

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        with self._lock:
            rows: list[Mapping[str, Any]] = self._conn.execute(sql, tuple(params)).fetchall()
            return rows

    @contextmanager
    def transaction(self) -> Iterator[SqliteDatabase]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_database(where: str | Path | Database, schema: str = SHARED_SCHEMA) -> Database:
    """A database by where it is: a ``postgresql://`` URL (tables in ``schema``), or a SQLite file path."""
    if not isinstance(where, (str, Path)):
        return where
    if is_postgres_url(str(where)):
        return PostgresDatabase(str(where), schema)
    return SqliteDatabase(where)


def ensure_columns(db: Database, table: str, columns: Mapping[str, str]) -> None:
    """Add ``columns`` (name: definition) that ``table`` lacks: columns added after its first release, added in
    place to older databases on either dialect."""
    with db.transaction() as tx:
        if db.dialect == "postgres":
            for column, definition in columns.items():
                tx.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}")
            return
        present = {row["name"] for row in tx.execute(f"PRAGMA table_info({table})")}
        for column, definition in columns.items():
            if column not in present:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _to_pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTransaction:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        from psycopg.rows import dict_row

        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(_to_pyformat(sql), tuple(params))
            return list(cur.fetchall()) if cur.description else []


class PostgresDatabase:
    """Tables in one schema of a Postgres database, through the process's pool for that URL."""

    dialect: Literal["sqlite", "postgres"] = "postgres"

    def __init__(self, url: str, schema: str = SHARED_SCHEMA) -> None:
        from psycopg import sql

        self.url = url
        self.schema = schema
        self.pool = pool_for(url)
        self._search_path = sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))
        self._local_search_path = sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
        with self.pool.connection() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        with self.transaction() as tx:
            return tx.execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[_PgTransaction]:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(self._local_search_path)
            yield _PgTransaction(conn)

    @contextmanager
    def session(self) -> Iterator[_PgTransaction]:
        """A connection of its own, outside any transaction, for session-level locks held across transactions."""
        with self.pool.connection() as conn:
            conn.execute(self._search_path)
            try:
                yield _PgTransaction(conn)
            finally:
                conn.execute("RESET search_path")

    def close(self) -> None:
        """Nothing to release: the pool is shared by everything in this process that uses the URL."""
