"""The Postgres store: documents, chunks and vectors (pgvector HNSW) in plain SQL tables; BM25 derived from them.

One schema per knowledge base (``kb_<name>_<hash>``) in any Postgres with pgvector; the ``ragtune`` schema
lists the knowledge bases. Writes to one KB are serialised by an advisory lock, so any number of processes
(several ``ragtune serve``, a Ray ingest) can write and search at once. Postgres is the source of truth for
everything, the chunks' BM25 tokens included (ragtune's analyzer: jieba for Chinese, Snowball stems for
English). Each process ranks the sparse side with ragtune's BM25 index caught up from the chunks table (new chunk
ids and a tombstone log, as the embedded store catches up from SQLite) and kept in the KB folder between runs:
the embedded store's exact scores at its speed, on any Postgres. (Scoring BM25 in SQL from a postings table was
measured first: exact, but it reads every posting of the query's terms — 0.8 s a query at 100k chunks.)
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragtune.errors import EmbedderMismatchError, StoreError
from ragtune.settings import BM25_B, BM25_K1
from ragtune.store.base import EncodeFn, FilterSpec, Ranking, StoreProgress
from ragtune.store.bm25 import BM25Index
from ragtune.store.filters import PgColumn, compile_postgres, validate_filter
from ragtune.store.local import (
    CONTEXT_KEY,
    DOCUMENT_META_FIELDS,
    PRECISION_KEY,
    CatchUpLog,
    DocumentRecord,
    DocumentUpdate,
    fetched_hit,
)
from ragtune.store.postgres import SHARED_SCHEMA, ConnectionPool, kb_schema, lock_key, pool_for, redact
from ragtune.store.text import tokenize
from ragtune.types import ChunkMeta, Hit, embedding_text

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# meta keys, as in the embedded store
_REEMBED_TARGET = "reembed_target"
_CHECKPOINT = "embedder_checkpoint"
# A KB's identity: a BM25 index saved in a folder belongs to this KB, not to an earlier one of the same name.
_KB_UID = "kb_uid"
# Bumped by every change of chunk metadata that leaves the chunk and tombstone heads alone (access groups set,
# chunks handed to a duplicate): other processes' cached filter answers are stale after it.
_REVISION = "revision"
_SPARSE_DIR = ("index", "sparse")
# Stored in columns or derived from the documents table, so not repeated in the meta JSON.
_META_EXCLUDE = {"source", "document_id", "chunk_index", "source_type", "page_number", "language"}
_TYPED = {"source": PgColumn("d.uri", "text"), "document_id": PgColumn("c.document_id", "text"),
          "chunk_index": PgColumn("c.chunk_index", "number"), "source_type": PgColumn("c.source_type", "text"),
          "page_number": PgColumn("c.page_number", "number"), "language": PgColumn("c.language", "text")}
_PGVECTOR_MAX_EF = 1000  # pgvector's largest hnsw.ef_search

_REGISTRY = f"""
CREATE SCHEMA IF NOT EXISTS {SHARED_SCHEMA};
CREATE TABLE IF NOT EXISTS {SHARED_SCHEMA}.knowledge_bases (
    name TEXT PRIMARY KEY, schema TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL
)"""

_KB_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE {s}.documents (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    source_type TEXT,
    content_hash TEXT,
    size BIGINT,
    version INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'duplicate')),
    error TEXT,
    duplicate_of TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    metadata JSONB NOT NULL DEFAULT '{{{{}}}}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX documents_hash ON {s}.documents (content_hash);
CREATE INDEX documents_duplicate_of ON {s}.documents (duplicate_of);
CREATE SEQUENCE {s}.chunk_ids;
CREATE TABLE {s}.chunks (
    id BIGINT PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES {s}.documents (id),
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    source_type TEXT,
    page_number INTEGER,
    language TEXT,
    meta JSONB NOT NULL,
    tokens TEXT NOT NULL,
    embedding vector({dim}) NOT NULL
);
CREATE INDEX chunks_document ON {s}.chunks (document_id);
CREATE INDEX chunks_source_type ON {s}.chunks (source_type);
CREATE INDEX chunks_page_number ON {s}.chunks (page_number);
CREATE INDEX chunks_language ON {s}.chunks (language);
-- Equality, $in and list membership on metadata compile to jsonb containment, which this index serves.
CREATE INDEX chunks_meta ON {s}.chunks USING gin (meta jsonb_path_ops);
CREATE INDEX chunks_embedding ON {s}.chunks USING hnsw (embedding vector_ip_ops)
    WITH (m = {m}, ef_construction = {ef_construction});
-- Chunk ids deleted, in order: what each process's BM25 index removes when it catches up.
CREATE TABLE {s}.tombstones (seq BIGSERIAL PRIMARY KEY, chunk_id BIGINT NOT NULL);
-- A re-embed in progress: new vectors beside the live ones (any dimension), swapped in by one transaction.
CREATE TABLE {s}.reembed_vectors (chunk_id BIGINT PRIMARY KEY, embedding vector NOT NULL)
"""

_CHUNK_COLUMNS = ("id", "uid", "document_id", "chunk_index", "text", "start_offset", "end_offset", "source_type",
                  "page_number", "language", "meta", "tokens", "embedding")
_CHUNK_TYPES = ("int8", "text", "text", "int4", "text", "int4", "int4", "text", "int4", "text", "jsonb", "text",
                "vector")
_DOC_COLUMNS = ("id", "uri", "source_type", "content_hash", "size", "version", "status", "error", "duplicate_of",
                "chunk_count", "title", "metadata", "created_at", "updated_at")


def _connect_registry(pool: ConnectionPool) -> None:
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(SHARED_SCHEMA, "registry"),))
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except Exception as exc:
            raise StoreError(f"{redact(pool.url)}: cannot enable pgvector ({exc}) — install pgvector on the server "
                             "and run CREATE EXTENSION vector as a superuser") from None
        for statement in _REGISTRY.split(";"):
            conn.execute(statement)
    pool.enable_vectors()


def list_knowledge_bases(url: str) -> list[str]:
    """Names of the knowledge bases stored in the database at ``url``."""
    pool = pool_for(url)
    _connect_registry(pool)
    with pool.connection() as conn:
        rows = conn.execute(f"SELECT name FROM {SHARED_SCHEMA}.knowledge_bases ORDER BY name").fetchall()
    return [r[0] for r in rows]


def stored_embedder(url: str, name: str) -> tuple[str, int] | None:
    """The embedder recorded for the knowledge base ``name`` in ``url`` (None when there is no such KB)."""
    from psycopg import sql

    pool = pool_for(url)
    _connect_registry(pool)
    with pool.connection() as conn:
        row = conn.execute(f"SELECT schema FROM {SHARED_SCHEMA}.knowledge_bases WHERE name = %s", (name,)).fetchone()
        if row is None:
            return None
        meta = dict(conn.execute(sql.SQL("SELECT key, value FROM {}.meta").format(sql.Identifier(row[0]))).fetchall())
    return (meta["embedder"], int(meta["dim"])) if "embedder" in meta else None


def drop_knowledge_base(url: str, name: str) -> bool:
    """Delete the knowledge base ``name`` and everything in it; False when there was none."""
    from psycopg import sql

    pool = pool_for(url)
    _connect_registry(pool)
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(f"DELETE FROM {SHARED_SCHEMA}.knowledge_bases WHERE name = %s RETURNING schema",
                           (name,)).fetchone()
        if row is None:
            return False
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(row[0])))
    return True


class PostgresStore:
    """A knowledge base in a Postgres database (see the module docstring); ``directory`` is its local folder."""

    def __init__(
        self,
        url: str,
        name: str,
        directory: Path,
        *,
        embedder_name: str,
        dim: int,
        create: bool = False,
        bm25_k1: float = BM25_K1,
        bm25_b: float = BM25_B,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 200,
        hnsw_ef_search: int = 128,
        exact_search_below: int = 20000,
        checkpoint: str = "",
    ) -> None:
        from psycopg import sql

        self.url = url
        self.name = name
        self.directory = Path(directory)
        self.schema = kb_schema(name)
        self._pool = pool_for(url)
        self._bm25 = (float(bm25_k1), float(bm25_b))
        self._hnsw = (hnsw_m, hnsw_ef_construction)
        self.ef_search = hnsw_ef_search
        self.exact_below = exact_search_below
        self._lock_key = lock_key(self.schema)
        self._sql_cache: dict[str, Any] = {}
        self._identifier = sql.Identifier(self.schema)
        _connect_registry(self._pool)
        self._open_schema(create, dim)
        self.embedder_name, self.dim = self._check_embedder(embedder_name, dim, checkpoint)
        self._lock = threading.RLock()
        self._kb_uid = self.get_meta(_KB_UID) or ""
        self._sparse, self._seen = self._load_sparse()
        self._dirty = False
        self._revision = 0
        self._last_allowed: tuple[tuple[str, tuple[int, int], int], set[int]] | None = None
        self._refresh(opening=True)

    # ------------------------------------------------------------------ setup

    @property
    def location(self) -> str:
        return f"{redact(self.url)} (knowledge base {self.name!r})"

    def _q(self, text: str) -> Any:
        """``text`` with ``{s}`` as this KB's schema, composed once."""
        composed = self._sql_cache.get(text)
        if composed is None:
            from psycopg import sql

            if len(self._sql_cache) > 1024:  # filters of many shapes: keep the cache bounded
                self._sql_cache.clear()
            composed = self._sql_cache[text] = sql.SQL(text).format(s=self._identifier)
        return composed

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction holding the KB's write lock: writers queue, readers are never blocked."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            yield conn

    def _open_schema(self, create: bool, dim: int) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(SHARED_SCHEMA, "registry"),))
            row = conn.execute(f"SELECT schema FROM {SHARED_SCHEMA}.knowledge_bases WHERE name = %s",
                               (self.name,)).fetchone()
            if row is not None:
                return
            if not create:
                raise StoreError(f"no knowledge base {self.name!r} in {redact(self.url)} — create it with 'ragtune "
                                 f"init --kb {self.directory} --store URL' or ingest into it")
            m, ef_construction = self._hnsw
            for statement in _KB_SCHEMA.format(s="{s}", dim=int(dim), m=int(m),
                                               ef_construction=int(ef_construction)).split(";"):
                if statement.strip():
                    conn.execute(self._q(statement))
            conn.execute(f"INSERT INTO {SHARED_SCHEMA}.knowledge_bases (name, schema, created_at) VALUES (%s, %s, %s)",
                         (self.name, self.schema, time.time()))
            log.info("created knowledge base %r in %s (schema %s)", self.name, redact(self.url), self.schema)

    def _check_embedder(self, name: str, dim: int, checkpoint: str) -> tuple[str, int]:
        with self._write() as conn:
            stored = dict(conn.execute(self._q("SELECT key, value FROM {s}.meta")).fetchall())
            if "embedder" not in stored:
                for key, value in (("schema_version", SCHEMA_VERSION), ("embedder", name), ("dim", dim),
                                   (_CHECKPOINT, checkpoint), ("created_at", time.time()),
                                   (_KB_UID, uuid.uuid4().hex)):
                    self._set_meta(conn, key, str(value))
                return name, dim
        if stored["embedder"] != name or int(stored["dim"]) != dim:
            raise EmbedderMismatchError(
                f"{self.location} was built with embedder '{stored['embedder']}' ({stored['dim']}-d) but was opened "
                f"with '{name}' ({dim}-d) — open it with embedder = \"{stored['embedder']}\", or ingest into a new "
                f"knowledge base"
            )
        return name, dim

    def _set_meta(self, conn: psycopg.Connection[Any], key: str, value: str) -> None:
        conn.execute(self._q("INSERT INTO {s}.meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "
                             "value = EXCLUDED.value"), (key, value))

    def get_meta(self, key: str) -> str | None:
        """A value recorded in the KB's meta table (None when absent)."""
        with self._read() as conn:
            row = conn.execute(self._q("SELECT value FROM {s}.meta WHERE key = %s"), (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Record a value in the KB's meta table."""
        with self._write() as conn:
            self._set_meta(conn, key, value)

    @property
    def checkpoint(self) -> str:
        return self.get_meta(_CHECKPOINT) or ""

    @property
    def chunk_context(self) -> int:
        """The context version the chunks were embedded and tokenised with (``types.CHUNK_CONTEXT_VERSION``)."""
        return int(self.get_meta(CONTEXT_KEY) or 0)

    # ------------------------------------------------------------------ writes

    def apply(self, updates: Sequence[DocumentUpdate]) -> None:
        """Store documents in one transaction, with the embedded store's rules (see ``ChunkStore``)."""
        if not updates:
            return
        with self._write() as conn:
            added: list[DocumentUpdate] = []
            for update in updates:
                rec = update.record
                if rec.status == "failed":
                    self._upsert_record(conn, rec, keep_chunks=True)
                    continue
                self._drop_chunks(conn, rec.id)
                if rec.status == "duplicate":
                    rec.chunk_count = 0
                    self._upsert_record(conn, rec)
                    continue
                rec.chunk_count = len(update.chunks)
                self._upsert_record(conn, rec)
                added.append(update)
            # One COPY of every new chunk and one of their postings: round trips, not rows, dominate small files.
            self._insert_chunks(conn, added)

    def delete(self, document_ids: Iterable[str]) -> int:
        """Delete documents and their chunks; a duplicate of a deleted document inherits its chunks."""
        count = 0
        with self._write() as conn:
            for doc_id in document_ids:
                if conn.execute(self._q("SELECT 1 FROM {s}.documents WHERE id = %s"), (doc_id,)).fetchone() is None:
                    continue
                self._drop_chunks(conn, doc_id)
                conn.execute(self._q("DELETE FROM {s}.documents WHERE id = %s"), (doc_id,))
                count += 1
        return count

    def _drop_chunks(self, conn: psycopg.Connection[Any], doc_id: str) -> None:
        heir = conn.execute(self._q(
            "SELECT id FROM {s}.documents WHERE duplicate_of = %s AND status = 'duplicate' ORDER BY uri COLLATE \"C\""
            " LIMIT 1"), (doc_id,)).fetchone()
        count = conn.execute(self._q("SELECT chunk_count FROM {s}.documents WHERE id = %s"), (doc_id,)).fetchone()
        if heir is not None and count is not None and count[0] > 0:
            # The content lives on under an identical file: hand the chunks over instead of re-embedding.
            heir_id = heir[0]
            conn.execute(self._q("UPDATE {s}.chunks SET document_id = %s WHERE document_id = %s"), (heir_id, doc_id))
            heir_meta = _row(conn, self._q("SELECT metadata FROM {s}.documents WHERE id = %s"), (heir_id,))[0]
            for key in DOCUMENT_META_FIELDS:  # the chunks now answer to the heir's access rules
                conn.execute(self._q("UPDATE {s}.chunks SET meta = jsonb_set(meta, %s, %s::jsonb)"
                                     " WHERE document_id = %s"),
                             ([key], json.dumps(heir_meta.get(key), ensure_ascii=False), heir_id))
            self._bump_revision(conn)
            conn.execute(self._q(
                "UPDATE {s}.documents SET status = 'ok', duplicate_of = NULL, chunk_count = %s, version = version + 1,"
                " updated_at = %s WHERE id = %s"), (count[0], time.time(), heir_id))
            conn.execute(self._q("UPDATE {s}.documents SET duplicate_of = %s WHERE duplicate_of = %s AND id != %s"),
                         (heir_id, doc_id, heir_id))
            return
        conn.execute(self._q("WITH gone AS (DELETE FROM {s}.chunks WHERE document_id = %s RETURNING id)"
                             " INSERT INTO {s}.tombstones (chunk_id) SELECT id FROM gone ORDER BY id"), (doc_id,))
        conn.execute(self._q("UPDATE {s}.documents SET duplicate_of = NULL WHERE duplicate_of = %s"), (doc_id,))

    def _bump_revision(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(self._q("INSERT INTO {s}.meta AS m (key, value) VALUES (%s, '1') ON CONFLICT (key) DO UPDATE"
                             " SET value = (m.value::bigint + 1)::text"), (_REVISION,))

    def update_meta(self, document_id: str, values: dict[str, Any]) -> bool:
        """Set document-level chunk metadata (``DOCUMENT_META_FIELDS``: access groups) on every chunk of a document
        and in its catalog metadata, in one transaction; False when there is no such document. Vectors and the
        BM25 index are untouched; filters (this process's and every other's) see the new values at once."""
        unknown = set(values) - set(DOCUMENT_META_FIELDS)
        if unknown:
            raise StoreError(f"update_meta: {', '.join(sorted(unknown))} cannot be set per document — "
                             f"settable: {', '.join(DOCUMENT_META_FIELDS)}")
        with self._write() as conn:
            row = conn.execute(self._q("SELECT metadata FROM {s}.documents WHERE id = %s"), (document_id,)).fetchone()
            if row is None:
                return False
            metadata = {**(row[0] or {}), **values}
            conn.execute(self._q("UPDATE {s}.documents SET metadata = %s::jsonb, updated_at = %s WHERE id = %s"),
                         (json.dumps(metadata, ensure_ascii=False), time.time(), document_id))
            for key, value in values.items():
                conn.execute(self._q("UPDATE {s}.chunks SET meta = jsonb_set(meta, %s, %s::jsonb)"
                                     " WHERE document_id = %s"),
                             ([key], json.dumps(value, ensure_ascii=False), document_id))
            self._bump_revision(conn)
        return True

    def _upsert_record(self, conn: psycopg.Connection[Any], rec: DocumentRecord, *, keep_chunks: bool = False
                       ) -> None:
        now = time.time()
        existing = conn.execute(self._q("SELECT created_at, chunk_count FROM {s}.documents WHERE id = %s"),
                                (rec.id,)).fetchone()
        rec.created_at = existing[0] if existing else now
        rec.updated_at = now
        if keep_chunks and existing:
            # A failed re-ingest: record the error, keep the last good version searchable.
            conn.execute(self._q("UPDATE {s}.documents SET status = 'failed', error = %s, updated_at = %s"
                                 " WHERE id = %s"), (rec.error, now, rec.id))
            rec.chunk_count = existing[1]
            return
        values = (rec.id, rec.uri, rec.source_type, rec.content_hash, rec.size, rec.version, rec.status, rec.error,
                  rec.duplicate_of, rec.chunk_count, rec.title, json.dumps(rec.metadata, ensure_ascii=False),
                  rec.created_at, rec.updated_at)
        columns = ", ".join(_DOC_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _DOC_COLUMNS[1:])
        conn.execute(self._q(f"INSERT INTO {{s}}.documents ({columns}) VALUES ({', '.join(['%s'] * len(values))})"
                             f" ON CONFLICT (id) DO UPDATE SET {updates}"), values)

    def _insert_chunks(self, conn: psycopg.Connection[Any], updates: list[DocumentUpdate]) -> None:
        from psycopg.types.json import Jsonb

        rows = []
        for update in updates:
            rec, chunks, vectors, tokens = update.record, update.chunks, update.vectors, update.chunk_tokens()
            if vectors is None or len(vectors) != len(chunks):
                raise StoreError(f"{rec.uri}: {len(chunks)} chunks but {0 if vectors is None else len(vectors)} "
                                 "vectors")
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if len(chunks) and vectors.shape[1] != self.dim:
                raise EmbedderMismatchError(f"{rec.uri}: vectors have {vectors.shape[1]} dimensions, the KB {self.dim}")
            for i, chunk in enumerate(chunks):
                chunk.id = f"{rec.id}-{rec.version}-{i}"
                chunk.meta.document_id = rec.id
                chunk.meta.chunk_index = i
                rows.append((chunk, rec.id, vectors[i], tokens[i]))
        if not rows:
            return
        ids = [r[0] for r in conn.execute(self._q("SELECT nextval('{s}.chunk_ids') FROM generate_series(1, %s)"),
                                          (len(rows),))]
        with conn.cursor() as cur, cur.copy(self._q(
            f"COPY {{s}}.chunks ({', '.join(_CHUNK_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        )) as copy:
            copy.set_types(list(_CHUNK_TYPES))
            for chunk_id, (chunk, doc_id, vector, chunk_tokens) in zip(ids, rows, strict=True):
                copy.write_row((
                    chunk_id, chunk.id, doc_id, chunk.meta.chunk_index, chunk.text, chunk.start, chunk.end,
                    chunk.meta.source_type, chunk.meta.page_number, chunk.meta.language,
                    Jsonb(chunk.meta.model_dump(exclude=_META_EXCLUDE)), " ".join(chunk_tokens), vector,
                ))

    # ------------------------------------------------------------------ reads

    def document(self, doc_id: str) -> DocumentRecord | None:
        with self._read() as conn:
            row = conn.execute(self._q(f"SELECT {', '.join(_DOC_COLUMNS)} FROM {{s}}.documents WHERE id = %s"),
                               (doc_id,)).fetchone()
        return _record(row) if row else None

    def find_by_hash(self, content_hash: str, exclude: str | None = None) -> DocumentRecord | None:
        """A stored, healthy document with this content (the original of a would-be duplicate)."""
        with self._read() as conn:
            row = conn.execute(self._q(
                f"SELECT {', '.join(_DOC_COLUMNS)} FROM {{s}}.documents WHERE content_hash = %s AND status = 'ok'"
                " AND id != %s ORDER BY created_at LIMIT 1"), (content_hash, exclude or "")).fetchone()
        return _record(row) if row else None

    def documents(self, status: str | None = None) -> list[DocumentRecord]:
        where = " WHERE status = %s" if status else ""
        with self._read() as conn:
            rows = conn.execute(self._q(f"SELECT {', '.join(_DOC_COLUMNS)} FROM {{s}}.documents{where}"
                                        " ORDER BY uri COLLATE \"C\""), (status,) if status else ()).fetchall()
        return [_record(r) for r in rows]

    def write_order(self) -> list[str]:
        """Ids of the documents that have chunks, in the order their chunks were written (chunk ids ascending)."""
        with self._read() as conn:
            rows = conn.execute(self._q("SELECT document_id FROM {s}.chunks GROUP BY document_id ORDER BY min(id)"))
            return [r[0] for r in rows.fetchall()]

    def count(self) -> int:
        with self._read() as conn:
            return int(_row(conn, self._q("SELECT count(*) FROM {s}.chunks"))[0])

    def stats(self) -> dict[str, Any]:
        with self._read() as conn:
            by_status = dict(conn.execute(self._q("SELECT status, count(*) FROM {s}.documents GROUP BY status")
                                          ).fetchall())
        return {
            "documents": by_status.get("ok", 0), "failed": by_status.get("failed", 0),
            "duplicates": by_status.get("duplicate", 0), "chunks": self.count(), "embedder": self.embedder_name,
            "embedder_checkpoint": self.checkpoint, "dim": self.dim, "path": str(self.directory),
            "store": redact(self.url), "store_name": self.name, "schema": self.schema,
            "sparse_index": len(self._sparse), "reembed_pending": self.reembed_pending(),
        }

    # ------------------------------------------------------------------ the derived BM25 index

    def _load_sparse(self) -> tuple[BM25Index, tuple[int, int]]:
        path = self.directory.joinpath(*_SPARSE_DIR)
        k1, b = self._bm25
        if path.exists():
            try:
                with _folder_lock(path.parent):
                    index, meta = BM25Index.load(path)
                if (index.k1, index.b) == (k1, b) and meta.get("kb_uid") == self._kb_uid:
                    return index, (int(meta["chunk_seq"]), int(meta["tomb_seq"]))
                log.info("%s belongs to another KB or other BM25 parameters; rebuilding it", path)
            except (StoreError, KeyError, OSError) as exc:
                log.warning("%s; rebuilding the BM25 index from the database", exc)
        return BM25Index(k1=k1, b=b), (0, 0)

    def refresh(self) -> None:
        """Catch the BM25 index up with the chunks table (this and other processes' writes)."""
        self._refresh()

    def _refresh(self, *, opening: bool = False) -> None:
        # ``opening``: when the store opens or rebuilds, an index that starts from nothing is being rebuilt.
        with self._lock, self._read() as conn:
            row = _row(conn, self._q("SELECT (SELECT coalesce(max(id), 0) FROM {s}.chunks),"
                                     " (SELECT coalesce(max(seq), 0) FROM {s}.tombstones),"
                                     " (SELECT coalesce(max(value::bigint), 0) FROM {s}.meta WHERE key = %s)"),
                       (_REVISION,))
            heads, self._revision = (int(row[0]), int(row[1])), int(row[2])
            if heads == self._seen:
                return
            rebuilding = opening and self._seen[0] == 0
            # A rebuild reports its size, counted (ids leave gaps where chunks were deleted); a catch-up says what
            # it read when done.
            total = int(_row(conn, self._q("SELECT count(*) FROM {s}.chunks WHERE id <= %s"), (heads[0],))[0]) \
                if rebuilding else 0
            progress = CatchUpLog(f"BM25 index of {self.location}", total, rebuilding=rebuilding)
            # Writers take ids and tombstone numbers under the KB's lock, so they commit in order: everything up
            # to the heads read above is visible now, and what commits later is caught up next time.
            last = self._seen[0]
            while True:
                rows = conn.execute(self._q("SELECT id, tokens FROM {s}.chunks WHERE id > %s AND id <= %s ORDER BY id"
                                            " LIMIT 20000"), (last, max(heads[0], last))).fetchall()
                if not rows:
                    break
                self._sparse.add([r[0] for r in rows], [r[1].split() for r in rows])
                progress.advance(len(rows))
                last = rows[-1][0]
            removed = [r[0] for r in conn.execute(self._q(
                "SELECT chunk_id FROM {s}.tombstones WHERE seq > %s AND seq <= %s"), (self._seen[1], heads[1]))]
            self._sparse.remove(removed)
            self._seen = (max(heads[0], self._seen[0]), heads[1])
            self._dirty = True
            progress.finish(len(removed))

    def allowed_ids(self, filter: FilterSpec) -> set[int] | None:
        """Chunk ids that pass ``filter`` (None when there is no filter), as of now."""
        with self._lock:
            self.refresh()
            return self._allowed(filter)

    def _allowed(self, filter: FilterSpec) -> set[int] | None:
        """Chunk ids that pass ``filter`` (None: no filter); the last answer is kept while nothing changed (the
        heads and revision read by the last ``refresh``)."""
        spec = validate_filter(filter)
        if not spec:
            return None
        key = (json.dumps(spec, sort_keys=True), self._seen, self._revision)
        if self._last_allowed is not None and self._last_allowed[0] == key:
            return self._last_allowed[1]
        where, join, params = self._where(spec)
        with self._read() as conn:
            allowed = {r[0] for r in conn.execute(self._q(f"SELECT c.id FROM {{s}}.chunks c{join} WHERE {where}"),
                                                  params)}
        self._last_allowed = (key, allowed)
        return allowed

    def _where(self, filter: FilterSpec) -> tuple[str, str, list[Any]]:
        spec = validate_filter(filter)
        columns = {name: _TYPED.get(name, PgColumn("c.meta", "json")) for name in ChunkMeta.model_fields}
        where, params = compile_postgres(spec, columns)
        # Join the catalog only when the filter names the source path.
        join = " JOIN {s}.documents d ON d.id = c.document_id" if "d.uri" in where else ""
        return where, join, params

    def dense_search(self, vector: np.ndarray, k: int, filter: FilterSpec = None) -> Ranking:
        vector = np.asarray(vector, dtype=np.float32).ravel()
        where, join, params = self._where(filter)
        self.refresh()
        with self._read() as conn, conn.transaction():
            exact = k > _PGVECTOR_MAX_EF or len(self._sparse) < self.exact_below
            if not exact:
                conn.execute(self._q(f"SET LOCAL hnsw.ef_search = {min(max(self.ef_search, k), _PGVECTOR_MAX_EF)}"))
                if where != "TRUE":
                    # pgvector 0.8: keep walking the graph until k rows pass the filter (or max_scan_tuples).
                    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = self._dense_rows(conn, vector, k, where, join, params, exact)
            if not exact and where != "TRUE" and len(rows) < k:
                # A selective filter can exhaust the graph walk: the filtered rows are few, so scan them exactly.
                rows = self._dense_rows(conn, vector, k, where, join, params, True)
        rows.sort(key=lambda r: (r[1], r[0]))  # relaxed_order may return neighbours slightly out of order
        return [(int(i), -float(d)) for i, d in rows]

    def _dense_rows(self, conn: psycopg.Connection[Any], vector: np.ndarray, k: int, where: str, join: str,
                    params: list[Any], exact: bool) -> list[tuple[int, float]]:
        # The index serves ORDER BY exactly "embedding <#> q"; "+ 0" keeps the planner to an exact scan.
        order = "(c.embedding <#> %b) + 0, c.id" if exact else "c.embedding <#> %b"
        query = self._q(f"SELECT c.id, c.embedding <#> %b FROM {{s}}.chunks c{join} WHERE {where} ORDER BY {order}"
                        " LIMIT %s")
        return [(r[0], r[1]) for r in conn.execute(query, (vector, *params, vector, k)).fetchall()]

    def sparse_search(self, text: str, k: int, filter: FilterSpec = None) -> Ranking:
        tokens = tokenize(text)
        with self._lock:
            self.refresh()
            ids, scores = self._sparse.search(tokens, k, self._allowed(filter))
        return list(zip(ids.tolist(), scores.tolist(), strict=True))

    def get(self, ids: Sequence[int]) -> dict[int, Hit]:
        """Hits (score 0) for chunk ids, keyed by id; ids that no longer exist are absent."""
        if not len(ids):
            return {}
        with self._read() as conn:
            rows = conn.execute(self._q(
                "SELECT c.id, c.uid, c.document_id, c.chunk_index, c.text, c.source_type, c.page_number, c.language,"
                " c.meta::text, d.uri FROM {s}.chunks c JOIN {s}.documents d ON d.id = c.document_id"
                " WHERE c.id = ANY(%s)"), ([int(i) for i in ids],)).fetchall()
        # The metadata as JSON text, validated in one pass (a dict from jsonb, then validated, took longer).
        return {row[0]: fetched_hit(*row[1:]) for row in rows}

    def document_ids(self, ids: Sequence[int]) -> dict[int, str]:
        """The document of each chunk id (ids that no longer exist are absent)."""
        if not len(ids):
            return {}
        with self._read() as conn:
            return dict(conn.execute(self._q("SELECT id, document_id FROM {s}.chunks WHERE id = ANY(%s)"),
                                     ([int(i) for i in ids],)).fetchall())

    def vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk id (``Hit.chunk_id``); ids that no longer exist are absent."""
        if not len(chunk_ids):
            return {}
        with self._read() as conn, conn.cursor(binary=True) as cur:
            cur.execute(self._q("SELECT uid, embedding FROM {s}.chunks WHERE uid = ANY(%s)"), (list(chunk_ids),))
            return {uid: vector for uid, vector in cur.fetchall()}

    def document_chunks(self, document_id: str) -> list[Hit]:
        """A document's chunks in order, as hits with score 0."""
        with self._read() as conn:
            ids = [r[0] for r in conn.execute(self._q(
                "SELECT id FROM {s}.chunks WHERE document_id = %s ORDER BY chunk_index"), (document_id,))]
        found = self.get(ids)
        return [found[i] for i in ids if i in found]

    def export(self, document_ids: Sequence[str]) -> list[DocumentUpdate]:
        """Documents as they are stored, chunks with their offsets, vectors and BM25 tokens (for ``kb migrate``)."""
        from ragtune.types import Chunk

        out = []
        with self._read() as conn, conn.cursor(binary=True) as cur:
            for doc_id in document_ids:
                cur.execute(self._q(f"SELECT {', '.join(_DOC_COLUMNS)} FROM {{s}}.documents WHERE id = %s"), (doc_id,))
                row = cur.fetchone()
                if row is None:
                    continue
                record = _record(row)
                cur.execute(self._q(
                    "SELECT c.text, c.start_offset, c.end_offset, c.chunk_index, c.source_type, c.page_number,"
                    " c.language, c.meta, c.tokens, c.embedding, c.uid, d.uri FROM {s}.chunks c"
                    " JOIN {s}.documents d ON d.id = c.document_id WHERE c.document_id = %s ORDER BY c.chunk_index"),
                    (doc_id,))
                chunks, vectors, tokens = [], [], []
                for text, start, end, index, source_type, page, language, meta, toks, vector, uid, uri in cur:
                    chunk_meta = ChunkMeta(**meta, source=uri, document_id=doc_id, chunk_index=index,
                                           source_type=source_type or "", page_number=page, language=language)
                    chunks.append(Chunk(id=uid, text=text, start=start, end=end, meta=chunk_meta))
                    vectors.append(vector)
                    tokens.append(toks.split())
                array = np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)
                out.append(DocumentUpdate(record, chunks, array, tokens))
        return out

    # ------------------------------------------------------------------ maintenance

    def verify(self) -> dict[str, Any]:
        """Consistency report: catalog counts, the BM25 index against the chunks, the vector index's validity."""
        problems: list[str] = []
        self.refresh()
        with self._lock, self._read() as conn, conn.transaction():
            for uri, recorded, actual in conn.execute(self._q(
                "SELECT d.uri, d.chunk_count, (SELECT count(*) FROM {s}.chunks c WHERE c.document_id = d.id) n"
                " FROM {s}.documents d WHERE d.chunk_count != (SELECT count(*) FROM {s}.chunks c"
                " WHERE c.document_id = d.id)")):
                problems.append(f"{uri}: catalog says {recorded} chunks, database has {actual}")
            ids = {r[0] for r in conn.execute(self._q("SELECT id FROM {s}.chunks"))}
            valid = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = 'chunks_embedding'",
                (self.schema,)).fetchone()
            if valid is None or not valid[0]:
                problems.append("the vector index is missing or invalid")
            by_status = dict(conn.execute(self._q("SELECT status, count(*) FROM {s}.documents GROUP BY status")
                                          ).fetchall())
            missing = sum(1 for i in ids if i not in self._sparse)
            extra = len(self._sparse) - (len(ids) - missing)
            if missing or extra:
                problems.append(f"BM25 index: {missing} chunks missing, {extra} stale entries")
        return {"ok": not problems, "problems": problems, "chunks": len(ids),
                "documents": by_status.get("ok", 0), "failed": by_status.get("failed", 0),
                "duplicates": by_status.get("duplicate", 0)}

    @contextmanager
    def bulk_load(self, maintenance_work_mem: str = "1GB") -> Iterator[None]:
        """Load many chunks at once (a migration, a first large ingest): the vector index is dropped for the load
        and built once at the end, which pgvector does several times faster than it grows an index row by row.
        Searches meanwhile scan exactly (slower, never wrong); a crash leaves ``verify`` reporting the missing
        index and ``rebuild_indexes`` building it."""
        with self._write() as conn:
            conn.execute(self._q("DROP INDEX IF EXISTS {s}.chunks_embedding"))
        try:
            yield
        finally:
            started = time.perf_counter()
            with self._pool.connection() as conn:
                self._create_vector_index(conn, maintenance_work_mem)
            log.info("built the vector index of %s in %.1fs", self.location, time.perf_counter() - started)

    def _create_vector_index(self, conn: psycopg.Connection[Any], maintenance_work_mem: str = "1GB") -> None:
        from psycopg import sql

        m, ef_construction = self._hnsw
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
        conn.execute(self._q(f"CREATE INDEX IF NOT EXISTS chunks_embedding ON {{s}}.chunks USING hnsw (embedding"
                             f" vector_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"))
        conn.execute("RESET maintenance_work_mem")

    def rebuild_indexes(self) -> None:
        """Rebuild this process's BM25 index from the chunks' tokens and the vector index from the vectors."""
        with self._lock:
            k1, b = self._bm25
            self._sparse, self._seen = BM25Index(k1=k1, b=b), (0, 0)
            self._last_allowed = None
            self._refresh(opening=True)
            self.save_indexes()
        with self._write() as conn:
            conn.execute(self._q("DROP INDEX IF EXISTS {s}.chunks_embedding"))
            self._create_vector_index(conn)

    def save_indexes(self) -> None:
        """Keep the BM25 index in the KB folder with the database position it covers (the next open catches up
        from there instead of reading every chunk). Processes sharing the folder take turns."""
        with self._lock:
            if not self._dirty:
                return
            self.refresh()
            path = self.directory.joinpath(*_SPARSE_DIR)
            path.parent.mkdir(parents=True, exist_ok=True)
            with _folder_lock(path.parent):
                self._sparse.save(path, {"chunk_seq": self._seen[0], "tomb_seq": self._seen[1],
                                         "kb_uid": self._kb_uid, "store": redact(self.url), "schema": self.schema})
            self._dirty = False

    def close(self) -> None:
        """Save the BM25 index (connections belong to the process-wide pool of the URL)."""
        self.save_indexes()

    # ------------------------------------------------------------------ re-embedding

    def reembed_pending(self) -> dict[str, Any] | None:
        """The target of an interrupted re-embed and how many vectors it has computed (None: none pending)."""
        with self._read() as conn:
            row = conn.execute(self._q("SELECT value FROM {s}.meta WHERE key = %s"), (_REEMBED_TARGET,)).fetchone()
            if row is None:
                return None
            done = _row(conn, self._q("SELECT count(*) FROM {s}.reembed_vectors"))[0]
        return {**json.loads(row[0]), "vectors_done": int(done)}

    def reembed(
        self, encode: EncodeFn, *, name: str, dim: int, checkpoint: str = "", batch_size: int = 256,
        on_progress: StoreProgress | None = None, precision: str | None = None, swap: bool = True,
    ) -> dict[str, Any]:
        """Switch every chunk to vectors from another embedder, as the embedded store does: new vectors are
        committed batch by batch beside the live ones (a crash costs one batch; a re-run with the same target
        resumes), then one transaction swaps them in, with the recorded embedder (and ``precision``), and rebuilds
        the HNSW index. With ``swap`` False they are only staged (``staged_vectors``; ``cancel_reembed`` drops
        them) and a later call with the same target swaps them without encoding again."""
        if batch_size <= 0:
            raise StoreError("batch_size must be greater than 0.")
        if dim <= 0:
            raise StoreError("dim must be greater than 0.")
        target: dict[str, Any] = {"embedder": name, "dim": dim, "checkpoint": checkpoint}
        if precision is not None:
            target["precision"] = precision
        started = time.perf_counter()
        pending = self.reembed_pending()
        resumed = pending is not None and {k: pending.get(k) for k in target} == target
        with self._write() as conn:
            if not resumed:
                conn.execute(self._q("TRUNCATE {s}.reembed_vectors"))
                self._set_meta(conn, _REEMBED_TARGET, json.dumps(target))
            conn.execute(self._q("DELETE FROM {s}.reembed_vectors r WHERE NOT EXISTS (SELECT 1 FROM {s}.chunks c"
                                 " WHERE c.id = r.chunk_id)"))
            reused = _row(conn, self._q("SELECT count(*) FROM {s}.reembed_vectors"))[0]
        encoded = self._reembed_batches(encode, dim, batch_size, on_progress)
        if not swap:
            with self._read() as conn:
                staged = _row(conn, self._q("SELECT count(*) FROM {s}.reembed_vectors"))[0]
            return {"embedder": name, "dim": dim, "checkpoint": checkpoint, "precision": precision,
                    "staged": int(staged), "resumed": resumed, "reused_vectors": int(reused),
                    "encoded_vectors": encoded, "seconds": round(time.perf_counter() - started, 2)}
        with self._write() as conn:
            encoded += self._reembed_rest(conn, encode, dim, batch_size)
            conn.execute(self._q("DROP INDEX IF EXISTS {s}.chunks_embedding"))
            conn.execute(self._q("ALTER TABLE {s}.chunks DROP COLUMN embedding"))
            conn.execute(self._q(f"ALTER TABLE {{s}}.chunks ADD COLUMN embedding vector({int(dim)})"))
            swapped = conn.execute(self._q("UPDATE {s}.chunks c SET embedding = r.embedding FROM {s}.reembed_vectors r"
                                           " WHERE r.chunk_id = c.id")).rowcount
            conn.execute(self._q("ALTER TABLE {s}.chunks ALTER COLUMN embedding SET NOT NULL"))
            self._create_vector_index(conn)
            for key, value in (("embedder", name), ("dim", str(dim)), (_CHECKPOINT, checkpoint)):
                self._set_meta(conn, key, value)
            if precision is not None:
                self._set_meta(conn, PRECISION_KEY, precision)
            conn.execute(self._q("DELETE FROM {s}.meta WHERE key = %s"), (_REEMBED_TARGET,))
            conn.execute(self._q("TRUNCATE {s}.reembed_vectors"))
        self.embedder_name, self.dim = name, dim
        log.info("re-embedded %d chunks with %s (%d reused) in %.1fs", swapped, name, reused,
                 time.perf_counter() - started)
        return {"embedder": name, "dim": dim, "checkpoint": checkpoint, "precision": precision, "chunks": swapped,
                "resumed": resumed, "reused_vectors": int(reused), "encoded_vectors": encoded,
                "seconds": round(time.perf_counter() - started, 2)}

    def staged_vectors(self) -> tuple[list[int], np.ndarray]:
        """Chunk ids and the new vectors a re-embed in progress has computed so far (none: empty)."""
        with self._read() as conn, conn.cursor(binary=True) as cur:
            cur.execute(self._q("SELECT chunk_id, embedding FROM {s}.reembed_vectors ORDER BY chunk_id"))
            rows = cur.fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        return [int(r[0]) for r in rows], np.stack([r[1] for r in rows])

    def cancel_reembed(self) -> None:
        """Drop a re-embed in progress (its staged vectors and target); the live vectors were never touched."""
        with self._write() as conn:
            conn.execute(self._q("TRUNCATE {s}.reembed_vectors"))
            conn.execute(self._q("DELETE FROM {s}.meta WHERE key = %s"), (_REEMBED_TARGET,))

    def _missing_batch(self, conn: psycopg.Connection[Any], last: int, batch_size: int) -> list[Any]:
        return conn.execute(self._q(
            "SELECT c.id, c.text, c.meta FROM {s}.chunks c WHERE c.id > %s AND NOT EXISTS"
            " (SELECT 1 FROM {s}.reembed_vectors r WHERE r.chunk_id = c.id) ORDER BY c.id LIMIT %s"),
            (last, batch_size)).fetchall()

    def _encode_batch(self, conn: psycopg.Connection[Any], rows: list[Any], encode: EncodeFn, dim: int) -> None:
        context = self.chunk_context
        texts = [embedding_text(text, ChunkMeta(**meta), context) for _, text, meta in rows]
        vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)
        if vectors.shape != (len(rows), dim):
            raise EmbedderMismatchError(
                f"{self.location}: the new embedder returned vectors of shape {vectors.shape}, expected "
                f"({len(rows)}, {dim}) — check that its dimension is {dim}"
            )
        with conn.cursor() as cur:
            cur.executemany(self._q("INSERT INTO {s}.reembed_vectors (chunk_id, embedding) VALUES (%s, %b)"
                                    " ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding"),
                            [(r[0], vectors[i]) for i, r in enumerate(rows)])

    def _reembed_batches(self, encode: EncodeFn, dim: int, batch_size: int,
                         on_progress: StoreProgress | None) -> int:
        total = self.count()
        with self._read() as conn:
            done = _row(conn, self._q("SELECT count(*) FROM {s}.reembed_vectors"))[0]
        encoded, last = 0, 0
        if on_progress:
            on_progress(done, total)
        while True:
            with self._read() as conn:
                rows = self._missing_batch(conn, last, batch_size)
            if not rows:
                return encoded
            last = rows[-1][0]
            with self._write() as conn:
                self._encode_batch(conn, rows, encode, dim)
            encoded += len(rows)
            done += len(rows)
            if on_progress:
                on_progress(done, max(total, done))

    def _reembed_rest(self, conn: psycopg.Connection[Any], encode: EncodeFn, dim: int, batch_size: int) -> int:
        """Inside the swap's transaction: chunks ingested meanwhile by another process are embedded first."""
        encoded = 0
        while rows := self._missing_batch(conn, 0, batch_size):
            self._encode_batch(conn, rows, encode, dim)
            encoded += len(rows)
        return encoded


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` between processes (several servers may share a KB folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _row(conn: psycopg.Connection[Any], query: Any, params: Sequence[Any] = ()) -> Any:
    """The one row a query returns (aggregates, single-row tables)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise StoreError(f"the query {query!r} returned no row — the knowledge base schema is damaged")
    return row


def _record(row: Sequence[Any]) -> DocumentRecord:
    data = dict(zip(_DOC_COLUMNS, row, strict=True))
    data["metadata"] = data["metadata"] or {}
    return DocumentRecord(**data)
