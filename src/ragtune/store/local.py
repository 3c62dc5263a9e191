"""The embedded default store: SQLite (WAL) is the source of truth; HNSW and BM25 indexes are derived from it."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragtune.errors import EmbedderMismatchError, StoreError
from ragtune.settings import BM25_B, BM25_K1
from ragtune.store.bm25 import BM25Index
from ragtune.store.filters import compile_sql, validate_filter
from ragtune.store.hnsw import DenseIndex
from ragtune.store.text import tokenize
from ragtune.types import Chunk, ChunkMeta, Hit, context_header, embedding_text

log = logging.getLogger(__name__)

DB_FILE = "ragtune.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    source_type TEXT,
    content_hash TEXT,
    size INTEGER,
    version INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'duplicate')),
    error TEXT,
    duplicate_of TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_hash ON documents (content_hash);
CREATE INDEX IF NOT EXISTS documents_duplicate_of ON documents (duplicate_of);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents (id),
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    source_type TEXT,
    page_number INTEGER,
    language TEXT,
    meta TEXT NOT NULL,
    tokens TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_source_type ON chunks (source_type);
CREATE INDEX IF NOT EXISTS chunks_page_number ON chunks (page_number);
CREATE INDEX IF NOT EXISTS chunks_language ON chunks (language);
-- Lets filters on JSON metadata scan this narrow index instead of rows holding text and vectors
-- (measured at 200k chunks: 0.10 s instead of 0.62 s).
CREATE INDEX IF NOT EXISTS chunks_meta ON chunks (meta);
-- Dated questions and conversation threads search inside date ranges on every query: a range on this expression
-- (written as the filter compiler writes it) reads the index, not every chunk's metadata (LiHua-World, 1,182
-- chunks: 4.7 ms -> 0.02 ms, and the scan grows with the KB).
CREATE INDEX IF NOT EXISTS chunks_created_at ON chunks (json_extract(meta, '$.created_at'));
CREATE TABLE IF NOT EXISTS tombstones (seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id INTEGER NOT NULL);
-- A re-embed in progress: new vectors beside the live ones, swapped in by one transaction when all are done.
CREATE TABLE IF NOT EXISTS reembed_vectors (chunk_id INTEGER PRIMARY KEY, vector BLOB NOT NULL);
"""

# meta keys of a re-embed in progress (its target embedder) and of the embedder's recorded checkpoint
_REEMBED_TARGET = "reembed_target"
_CHECKPOINT = "embedder_checkpoint"
#: meta keys of how the chunks were encoded; a KB made before they were recorded has neither (fp32, context 0)
PRECISION_KEY = "embedder_precision"
CONTEXT_KEY = "chunk_context"
#: How many times a chunk's context header (document title, heading path) counts in its BM25 tokens: a field
#: weight as in BM25F. Part of context version 1 (KBs store the tokens), so a change needs a new version;
#: bench/default_pipeline.py measures 1, 2 and 3 on SciFact train/dev queries.
HEADER_BOOST = 2

EncodeFn = Callable[[list[str]], np.ndarray]
ReembedProgress = Callable[[int, int], None]

# Filterable fields and the trusted SQL expression each compiles to; user text never reaches SQL.
_COLUMNS = {name: f"json_extract(c.meta, '$.{name}')" for name in ChunkMeta.model_fields}
_COLUMNS.update(
    source="d.uri", document_id="c.document_id", chunk_index="c.chunk_index", source_type="c.source_type",
    page_number="c.page_number", language="c.language",
)
_LIST_FIELDS = frozenset({"tags", "heading_path", "acl", "pii"})
# Stored in columns or derived from the documents table, so not repeated in the meta JSON.
_META_EXCLUDE = {"source", "document_id", "chunk_index", "source_type", "page_number", "language"}
# Chunk metadata a document holds for all its chunks (kept in its catalog metadata too): set by update_meta,
# and carried over when a duplicate inherits a deleted document's chunks.
DOCUMENT_META_FIELDS = ("acl", "created_at")


@dataclass
class DocumentRecord:
    """A row of the document catalog."""

    id: str
    uri: str
    source_type: str | None = None
    content_hash: str | None = None
    size: int | None = None
    version: int = 0
    status: str = "ok"
    error: str | None = None
    duplicate_of: str | None = None
    chunk_count: int = 0
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class DocumentUpdate:
    """New content for one document: its record plus chunks, their vectors and BM25 tokens."""

    record: DocumentRecord
    chunks: list[Chunk] = field(default_factory=list)
    vectors: np.ndarray | None = None
    tokens: list[list[str]] | None = None  # BM25 tokens per chunk; computed here when not given
    # What each store extension computed from the chunks before the write (by extension name), so the
    # transaction itself stays short; an extension computes its part inside apply() when it is missing.
    extras: dict[str, Any] = field(default_factory=dict)

    def chunk_tokens(self) -> list[list[str]]:
        if self.tokens is None:
            self.tokens = [chunk_tokens(c) for c in self.chunks]
        return self.tokens


class StoreExtension(Protocol):
    """Tables derived from the chunks (a knowledge graph, say) that must stay in step with them: the store calls
    ``write`` inside the same transaction as every change of chunks, and ``verify`` from :meth:`LocalStore.verify`.
    Chunk ids are the store's integer ids; a chunk handed to a duplicate keeps its id."""

    name: str

    def create(self, conn: sqlite3.Connection) -> None:
        """Create the extension's tables (inside a write transaction; must be idempotent)."""

    def prepare(self, chunks: list[Chunk]) -> Any:
        """What ``write`` needs from new chunks, computed before the transaction (stored in ``extras``)."""

    def write(
        self, conn: sqlite3.Connection, added: list[tuple[list[int], DocumentUpdate]], removed: list[int]
    ) -> None:
        """Record added chunks (their new ids, with the update that carries them) and forget removed ids."""

    def verify(self, conn: sqlite3.Connection) -> list[str]:
        """Problems found (empty when in step with the chunks)."""
        return []


class LocalStore:
    """One directory: ``ragtune.db`` plus ``index/dense`` and ``index/sparse`` caught up from it on open."""

    def __init__(
        self,
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
        threads: int = 1,
        checkpoint: str = "",
        dense_index: Any = None,
    ) -> None:
        # ``dense_index``: a class like DenseIndex (made as ``cls(dim, **params)``, loaded as ``cls.load(path,
        # ...)``) that keeps the vectors elsewhere, e.g. in Milvus (store/milvus.py); the catch-up is the same.
        self._dense_index = dense_index or DenseIndex
        self.directory = Path(directory)
        db_path = self.directory / DB_FILE
        if not db_path.exists() and not create:
            raise StoreError(
                f"no knowledge base at {self.directory} — run 'ragtune init --kb {self.directory}' or ingest into it"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._commits = 0  # this connection's commits; PRAGMA data_version counts everyone else's
        self._conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._write():
            # executescript would commit on its own; run the statements inside our transaction instead.
            for statement in _split_sql(_SCHEMA):
                self._conn.execute(statement)
        self.embedder_name, self.dim = self._check_embedder(embedder_name, dim, checkpoint)
        self._bm25_params = (bm25_k1, bm25_b)
        self._hnsw_params = dict(
            m=hnsw_m, ef_construction=hnsw_ef_construction, ef_search=hnsw_ef_search,
            exact_below=exact_search_below, threads=threads,
        )
        self._dense, self._dense_seen = self._load_dense()
        self._sparse, self._sparse_seen = self._load_sparse()
        self._dirty = False
        self._last_allowed: tuple[tuple[str, int, int], set[int]] | None = None
        self.extensions: list[StoreExtension] = []
        self._refresh(opening=True)

    # ------------------------------------------------------------------ setup

    def _check_embedder(self, name: str, dim: int, checkpoint: str) -> tuple[str, int]:
        stored = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if "embedder" not in stored:
            with self._write():
                for key, value in (("schema_version", SCHEMA_VERSION), ("embedder", name), ("dim", dim),
                                   (_CHECKPOINT, checkpoint), ("created_at", time.time())):
                    self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))
            return name, dim
        if stored["embedder"] != name or int(stored["dim"]) != dim:
            raise EmbedderMismatchError(
                f"{self.directory} was built with embedder '{stored['embedder']}' ({stored['dim']}-d) but was opened "
                f"with '{name}' ({dim}-d) — open it with embedder = \"{stored['embedder']}\" (ragtune.toml, "
                f"RAGTUNE_EMBEDDER or --embedder), or ingest into a new knowledge base"
            )
        return name, dim

    @staticmethod
    def stored_embedder(directory: Path) -> tuple[str, int] | None:
        """The embedder recorded in an existing knowledge base, without opening its indexes."""
        db_path = Path(directory) / DB_FILE
        if not db_path.exists():
            return None
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            return None
        finally:
            conn.close()
        return (rows["embedder"], int(rows["dim"])) if "embedder" in rows else None

    def _index_meta(self, seen: tuple[int, int]) -> dict[str, Any]:
        return {"chunk_seq": seen[0], "tomb_seq": seen[1], "embedder": self.embedder_name, "dim": self.dim,
                "checkpoint": self.checkpoint}

    @property
    def checkpoint(self) -> str:
        """The recorded checkpoint hash of the embedder that produced the vectors ('' when not recorded)."""
        return self.get_meta(_CHECKPOINT) or ""

    def get_meta(self, key: str) -> str | None:
        """A value recorded in the KB's meta table (None when absent)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Record a value in the KB's meta table (how its chunks were encoded, say)."""
        with self._write():
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def chunk_context(self) -> int:
        """The context version the chunks were embedded and tokenised with (``types.CHUNK_CONTEXT_VERSION``)."""
        return int(self.get_meta(CONTEXT_KEY) or 0)

    def _load_dense(self) -> tuple[DenseIndex, tuple[int, int]]:
        path = self.directory / "index" / "dense"
        if path.exists():
            try:
                index, meta = self._dense_index.load(path, ef_search=self._hnsw_params["ef_search"],
                                              exact_below=self._hnsw_params["exact_below"],
                                              threads=self._hnsw_params["threads"])
                # The checkpoint tells apart two models saved under one name (a directory retrained in place).
                if (meta.get("embedder") == self.embedder_name and index.dim == self.dim
                        and meta.get("checkpoint", "") == self.checkpoint):
                    return index, (int(meta["chunk_seq"]), int(meta["tomb_seq"]))
                log.warning("dense index at %s belongs to another embedder; rebuilding it", path)
            except StoreError as exc:
                log.warning("%s; rebuilding it from the database", exc)
        return self._dense_index(self.dim, **self._hnsw_params), (0, 0)

    def _load_sparse(self) -> tuple[BM25Index, tuple[int, int]]:
        path = self.directory / "index" / "sparse"
        if path.exists():
            try:
                index, meta = BM25Index.load(path)
                if (index.k1, index.b) == self._bm25_params:
                    return index, (int(meta["chunk_seq"]), int(meta["tomb_seq"]))
                log.warning("BM25 parameters changed (k1 %g -> %g, b %g -> %g): rebuilding the sparse index once",
                            index.k1, self._bm25_params[0], index.b, self._bm25_params[1])
            except (StoreError, KeyError) as exc:
                log.warning("%s; rebuilding the sparse index from the database", exc)
        k1, b = self._bm25_params
        return BM25Index(k1=k1, b=b), (0, 0)

    # ------------------------------------------------------------------ derived indexes

    def _heads(self) -> tuple[int, int]:
        chunk_head = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        tomb_head = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tombstones'").fetchone()
        return (chunk_head[0] if chunk_head else 0, tomb_head[0] if tomb_head else 0)

    def refresh(self) -> None:
        """Catch the derived indexes up with the database (other processes may have written to it)."""
        self._refresh()

    def _refresh(self, *, opening: bool = False) -> None:
        # ``opening``: when the store opens or rebuilds, an index that starts from nothing is being rebuilt.
        with self._lock:
            heads = self._heads()
            if self._dense_seen != heads:
                self._dense_seen = self._catch_up(self._dense_seen, heads, dense=True, opening=opening)
                self._dirty = True
            if self._sparse_seen != heads:
                self._sparse_seen = self._catch_up(self._sparse_seen, heads, dense=False, opening=opening)
                self._dirty = True

    def _catch_up(self, seen: tuple[int, int], heads: tuple[int, int], *, dense: bool, opening: bool = False
                  ) -> tuple[int, int]:
        column = "vector" if dense else "tokens"
        # One read transaction, so the chunk scan and the tombstone scan see the same snapshot.
        self._conn.execute("BEGIN")
        try:
            heads = self._heads()
            rebuilding = opening and seen[0] == 0
            # Only a rebuild reports its size (an ordinary catch-up says how much it read when done).
            total = self._conn.execute("SELECT count(*) FROM chunks WHERE id <= ?", (heads[0],)).fetchone()[0] \
                if rebuilding else 0
            progress = CatchUpLog(f"{'dense' if dense else 'sparse'} index of {self.directory}", total,
                                  rebuilding=rebuilding)
            cursor = self._conn.execute(
                f"SELECT id, {column} FROM chunks WHERE id > ? AND id <= ? ORDER BY id", (seen[0], heads[0])
            )
            while rows := cursor.fetchmany(10000):
                ids = [r[0] for r in rows]
                if dense:
                    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                    self._dense.add(ids, vectors)
                else:
                    self._sparse.add(ids, [r[1].split() for r in rows])
                progress.advance(len(rows))
            removed = [
                r[0] for r in self._conn.execute(
                    "SELECT chunk_id FROM tombstones WHERE seq > ? AND seq <= ?", (seen[1], heads[1])
                )
            ]
        finally:
            self._conn.execute("COMMIT")
        (self._dense if dense else self._sparse).remove(removed)
        progress.finish(len(removed))
        return heads

    def save_indexes(self) -> None:
        """Persist both derived indexes with the database position they cover."""
        with self._lock:
            if not self._dirty:
                return
            self.refresh()
            self._dense.save(self.directory / "index" / "dense", self._index_meta(self._dense_seen))
            self._sparse.save(self.directory / "index" / "sparse", self._index_meta(self._sparse_seen))
            self._dirty = False

    def close(self) -> None:
        with self._lock:
            try:
                self.save_indexes()
            finally:
                self._conn.close()

    # ------------------------------------------------------------------ extensions

    def add_extension(self, extension: StoreExtension) -> None:
        """Keep ``extension``'s tables in step with every write from now on (its tables are created first)."""
        with self._lock:
            if any(e.name == extension.name for e in self.extensions):
                return
            with self._write():
                extension.create(self._conn)
            self.extensions.append(extension)

    def extension(self, name: str) -> StoreExtension | None:
        return next((e for e in self.extensions if e.name == name), None)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one read transaction (a consistent snapshot) for an extension's queries; nested
        reads share the outer one."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, for an extension's own writes (a graph build, say)."""
        with self._write():
            yield self._conn

    # ------------------------------------------------------------------ writes

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self._commits += 1

    def apply(self, updates: Sequence[DocumentUpdate]) -> None:
        """Store documents in one transaction: each document's old chunks are replaced by its new ones.

        A record with status 'failed' or 'duplicate' carries no chunks; a failed re-ingest of a document
        that has a good version keeps its chunks (nothing stored before is lost).
        """
        if not updates:
            return
        removed: list[int] = []
        added: list[tuple[list[int], DocumentUpdate]] = []
        with self._write():
            before = self._heads()
            for update in updates:
                rec = update.record
                if rec.status == "failed":
                    self._upsert_record(rec, keep_chunks=True)
                    continue
                removed.extend(self._drop_chunks(rec.id))
                if rec.status == "duplicate":
                    rec.chunk_count = 0
                    self._upsert_record(rec)
                    continue
                rec.chunk_count = len(update.chunks)
                self._upsert_record(rec)
                added.append((self._insert_chunks(rec, update), update))
            for extension in self.extensions:
                extension.write(self._conn, added, removed)
            after = self._heads()
        self._sync_indexes(before, after, removed, added)

    def delete(self, document_ids: Iterable[str]) -> int:
        """Delete documents and their chunks; a duplicate of a deleted document inherits its chunks."""
        removed: list[int] = []
        count = 0
        with self._write():
            before = self._heads()
            for doc_id in document_ids:
                if self._conn.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
                    continue
                removed.extend(self._drop_chunks(doc_id))
                self._conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
                count += 1
            for extension in self.extensions:
                extension.write(self._conn, [], removed)
            after = self._heads()
        self._sync_indexes(before, after, removed, [])
        return count

    def _sync_indexes(
        self, before: tuple[int, int], after: tuple[int, int], removed: list[int],
        added: list[tuple[list[int], DocumentUpdate]],
    ) -> None:
        with self._lock:
            for ids, update in added:
                if update.vectors is not None and len(ids):
                    self._dense.add(ids, update.vectors)
                    self._sparse.add(ids, update.chunk_tokens())
            self._dense.remove(removed)
            self._sparse.remove(removed)
            # Advance only when nobody else wrote since we last caught up; otherwise refresh() scans later.
            if self._dense_seen == before:
                self._dense_seen = after
            if self._sparse_seen == before:
                self._sparse_seen = after
            self._dirty = True

    def _drop_chunks(self, doc_id: str) -> list[int]:
        heir = self._conn.execute(
            "SELECT id FROM documents WHERE duplicate_of = ? AND status = 'duplicate' ORDER BY uri LIMIT 1", (doc_id,)
        ).fetchone()
        count = self._conn.execute("SELECT chunk_count FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if heir is not None and count is not None and count[0] > 0:
            # The content lives on under an identical file: hand the chunks over instead of re-embedding.
            heir_id = heir[0]
            self._conn.execute("UPDATE chunks SET document_id = ? WHERE document_id = ?", (heir_id, doc_id))
            heir_meta = json.loads(self._conn.execute(
                "SELECT metadata FROM documents WHERE id = ?", (heir_id,)).fetchone()[0] or "{}")
            for key in DOCUMENT_META_FIELDS:  # the chunks now answer to the heir's access rules
                self._conn.execute("UPDATE chunks SET meta = json_set(meta, ?, json(?)) WHERE document_id = ?",
                                   (f"$.{key}", json.dumps(heir_meta.get(key)), heir_id))
            self._conn.execute(
                "UPDATE documents SET status = 'ok', duplicate_of = NULL, chunk_count = ?, version = version + 1,"
                " updated_at = ? WHERE id = ?", (count[0], time.time(), heir_id),
            )
            self._conn.execute(
                "UPDATE documents SET duplicate_of = ? WHERE duplicate_of = ? AND id != ?", (heir_id, doc_id, heir_id)
            )
            return []
        ids = [r[0] for r in self._conn.execute("SELECT id FROM chunks WHERE document_id = ?", (doc_id,))]
        if ids:
            self._conn.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
            self._conn.executemany("INSERT INTO tombstones (chunk_id) VALUES (?)", [(i,) for i in ids])
        self._conn.execute("UPDATE documents SET duplicate_of = NULL WHERE duplicate_of = ?", (doc_id,))
        return ids

    def _upsert_record(self, rec: DocumentRecord, *, keep_chunks: bool = False) -> None:
        now = time.time()
        existing = self._conn.execute(
            "SELECT created_at, chunk_count FROM documents WHERE id = ?", (rec.id,)
        ).fetchone()
        rec.created_at = existing["created_at"] if existing else now
        rec.updated_at = now
        if keep_chunks and existing:
            # A failed re-ingest: record the error, keep the last good version searchable.
            self._conn.execute(
                "UPDATE documents SET status = 'failed', error = ?, updated_at = ? WHERE id = ?",
                (rec.error, now, rec.id),
            )
            rec.chunk_count = existing["chunk_count"]
            return
        self._conn.execute(
            "INSERT OR REPLACE INTO documents (id, uri, source_type, content_hash, size, version, status, error,"
            " duplicate_of, chunk_count, title, metadata, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.id, rec.uri, rec.source_type, rec.content_hash, rec.size, rec.version, rec.status, rec.error,
             rec.duplicate_of, rec.chunk_count, rec.title, json.dumps(rec.metadata, ensure_ascii=False),
             rec.created_at, rec.updated_at),
        )

    def _insert_chunks(self, rec: DocumentRecord, update: DocumentUpdate) -> list[int]:
        chunks, vectors, tokens = update.chunks, update.vectors, update.chunk_tokens()
        if vectors is None or len(vectors) != len(chunks):
            raise StoreError(f"{rec.uri}: {len(chunks)} chunks but {0 if vectors is None else len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(chunks) and vectors.shape[1] != self.dim:
            raise EmbedderMismatchError(f"{rec.uri}: vectors have {vectors.shape[1]} dimensions, the KB {self.dim}")
        ids = []
        for i, chunk in enumerate(chunks):
            chunk.id = f"{rec.id}-{rec.version}-{i}"
            chunk.meta.document_id = rec.id
            chunk.meta.chunk_index = i
            meta = chunk.meta.model_dump(exclude=_META_EXCLUDE)
            cursor = self._conn.execute(
                "INSERT INTO chunks (uid, document_id, chunk_index, text, start_offset, end_offset, source_type,"
                " page_number, language, meta, tokens, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chunk.id, rec.id, i, chunk.text, chunk.start, chunk.end, chunk.meta.source_type,
                 chunk.meta.page_number, chunk.meta.language, json.dumps(meta, ensure_ascii=False),
                 " ".join(tokens[i]), vectors[i].tobytes()),
            )
            ids.append(int(cursor.lastrowid or 0))
        return ids

    def update_meta(self, document_id: str, values: dict[str, Any]) -> bool:
        """Set document-level chunk metadata (``DOCUMENT_META_FIELDS``, e.g. access groups) on every chunk of a
        document and in its catalog metadata, in one transaction; False when there is no such document. The
        vectors and text indexes are untouched; filters see the new values at once."""
        unknown = set(values) - set(DOCUMENT_META_FIELDS)
        if unknown:
            raise StoreError(f"update_meta: {', '.join(sorted(unknown))} cannot be set per document — "
                             f"settable: {', '.join(DOCUMENT_META_FIELDS)}")
        with self._write():
            row = self._conn.execute("SELECT metadata FROM documents WHERE id = ?", (document_id,)).fetchone()
            if row is None:
                return False
            metadata = {**json.loads(row[0] or "{}"), **values}
            self._conn.execute("UPDATE documents SET metadata = ?, updated_at = ? WHERE id = ?",
                               (json.dumps(metadata, ensure_ascii=False), time.time(), document_id))
            for key, value in values.items():
                self._conn.execute("UPDATE chunks SET meta = json_set(meta, ?, json(?)) WHERE document_id = ?",
                                   (f"$.{key}", json.dumps(value, ensure_ascii=False), document_id))
        return True

    # ------------------------------------------------------------------ reads

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self._conn.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return _record(row) if row else None

    def find_by_hash(self, content_hash: str, exclude: str | None = None) -> DocumentRecord | None:
        """A stored, healthy document with this content (the original of a would-be duplicate)."""
        row = self._conn.execute(
            "SELECT * FROM documents WHERE content_hash = ? AND status = 'ok' AND id != ? ORDER BY created_at LIMIT 1",
            (content_hash, exclude or ""),
        ).fetchone()
        return _record(row) if row else None

    def documents(self, status: str | None = None) -> list[DocumentRecord]:
        sql = "SELECT * FROM documents" + (" WHERE status = ?" if status else "") + " ORDER BY uri"
        return [_record(r) for r in self._conn.execute(sql, (status,) if status else ())]

    def write_order(self) -> list[str]:
        """Ids of the documents that have chunks, in the order their chunks were written (chunk ids ascending)."""
        rows = self._conn.execute("SELECT document_id FROM chunks GROUP BY document_id ORDER BY min(id)")
        return [r[0] for r in rows]

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        by_status = dict(self._conn.execute("SELECT status, count(*) FROM documents GROUP BY status").fetchall())
        return {
            "documents": by_status.get("ok", 0),
            "failed": by_status.get("failed", 0),
            "duplicates": by_status.get("duplicate", 0),
            "chunks": self.count(),
            "embedder": self.embedder_name,
            "embedder_checkpoint": self.checkpoint,
            "embedder_precision": self.get_meta(PRECISION_KEY),
            "chunk_context": self.chunk_context,
            "dim": self.dim,
            "path": str(self.directory),
            "dense_index": len(self._dense),
            "sparse_index": len(self._sparse),
            "reembed_pending": self.reembed_pending(),
        }

    def allowed_ids(self, filter: dict[str, Any] | str | None) -> set[int] | None:
        """Chunk ids that pass ``filter`` (None when there is no filter).

        The last result is reused while the database is unchanged: a hybrid query filters twice. Any commit
        invalidates it, not only new or deleted chunks: chunks handed to a duplicate change document."""
        spec = validate_filter(filter)
        if not spec:
            return None
        data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        key = (json.dumps(spec, sort_keys=True), self._commits, data_version)
        if self._last_allowed is not None and self._last_allowed[0] == key:
            return self._last_allowed[1]
        allowed = self._query_allowed(spec)
        self._last_allowed = (key, allowed)
        return allowed

    def _query_allowed(self, spec: dict[str, Any]) -> set[int]:
        where, params = compile_sql(spec, _COLUMNS, _LIST_FIELDS)
        # Rows carry text and a 1.5 KB vector: let SQLite answer column filters from the narrow indexes,
        # and join the catalog only when the filter names the source path.
        join = " JOIN documents d ON d.id = c.document_id" if _COLUMNS["source"] in where else ""
        sql = f"SELECT c.id FROM chunks c{join} WHERE {where}"
        return {r[0] for r in self._conn.execute(sql, params)}

    def dense_search(
        self, vector: np.ndarray, k: int, filter: dict[str, Any] | str | None = None
    ) -> list[tuple[int, float]]:
        with self._lock:
            self.refresh()
            ids, scores = self._dense.search(vector, k, self.allowed_ids(filter))
        return list(zip(ids.tolist(), scores.tolist(), strict=True))

    def sparse_search(self, text: str, k: int, filter: dict[str, Any] | str | None = None) -> list[tuple[int, float]]:
        tokens = tokenize(text)
        with self._lock:
            self.refresh()
            allowed = self.allowed_ids(filter)
            ids, scores = self._sparse.search(tokens, k, allowed)
        return list(zip(ids.tolist(), scores.tolist(), strict=True))

    def get(self, ids: Sequence[int]) -> dict[int, Hit]:
        """Hits (score 0) for chunk ids, keyed by id; ids that no longer exist are absent."""
        out: dict[int, Hit] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            cursor = self._conn.cursor()
            cursor.row_factory = None  # plain tuples: a search fetches hundreds of rows
            rows = cursor.execute(
                "SELECT c.id, c.uid, c.document_id, c.chunk_index, c.text, c.source_type, c.page_number, c.language,"
                f" c.meta, d.uri FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})", part,
            )
            out.update((row[0], fetched_hit(*row[1:])) for row in rows)
        return out

    def document_ids(self, ids: Sequence[int]) -> dict[int, str]:
        """The document of each chunk id (ids that no longer exist are absent)."""
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            out.update(self._conn.execute(f"SELECT id, document_id FROM chunks WHERE id IN ({marks})", part))
        return out

    def vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk id (``Hit.chunk_id``); ids that no longer exist are absent."""
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(chunk_ids), 500):
            part = list(chunk_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for uid, blob in self._conn.execute(f"SELECT uid, vector FROM chunks WHERE uid IN ({marks})", part):
                out[uid] = np.frombuffer(blob, dtype=np.float32)
        return out

    def document_chunks(self, document_id: str) -> list[Hit]:
        """A document's chunks in order, as hits with score 0."""
        ids = [r[0] for r in self._conn.execute(
            "SELECT id FROM chunks WHERE document_id = ? ORDER BY chunk_index", (document_id,)
        )]
        found = self.get(ids)
        return [found[i] for i in ids if i in found]

    def export(self, document_ids: Sequence[str]) -> list[DocumentUpdate]:
        """Documents as they are stored, chunks with their offsets, vectors and BM25 tokens (for ``kb migrate``)."""
        out = []
        for doc_id in document_ids:
            record = self.document(doc_id)
            if record is None:
                continue
            rows = self._conn.execute(
                "SELECT c.uid, c.text, c.start_offset, c.end_offset, c.chunk_index, c.source_type, c.page_number,"
                " c.language, c.meta, c.tokens, c.vector, d.uri FROM chunks c JOIN documents d ON d.id = c.document_id"
                " WHERE c.document_id = ? ORDER BY c.chunk_index", (doc_id,),
            ).fetchall()
            chunks = [
                Chunk(id=r["uid"], text=r["text"], start=r["start_offset"], end=r["end_offset"], meta=ChunkMeta(
                    **json.loads(r["meta"]), source=r["uri"], document_id=doc_id, chunk_index=r["chunk_index"],
                    source_type=r["source_type"] or "", page_number=r["page_number"], language=r["language"]))
                for r in rows
            ]
            vectors = (np.frombuffer(b"".join(r["vector"] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                       if rows else np.zeros((0, self.dim), np.float32))
            out.append(DocumentUpdate(record, chunks, vectors, [r["tokens"].split() for r in rows]))
        return out

    def verify(self) -> dict[str, Any]:
        """Consistency report: catalog counts, orphans, and whether the derived indexes match the database."""
        with self._lock:
            self.refresh()
            problems: list[str] = []
            orphans = self._conn.execute(
                "SELECT count(*) FROM chunks c LEFT JOIN documents d ON d.id = c.document_id WHERE d.id IS NULL"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{orphans} chunks belong to no document")
            for row in self._conn.execute(
                "SELECT d.id, d.uri, d.chunk_count, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) n"
                " FROM documents d WHERE d.chunk_count != (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
            ):
                problems.append(f"{row['uri']}: catalog says {row['chunk_count']} chunks, database has {row['n']}")
            ids = {r[0] for r in self._conn.execute("SELECT id FROM chunks")}
            for name, index in (("dense", self._dense), ("sparse", self._sparse)):
                missing = sum(1 for i in ids if i not in index)
                extra = len(index) - (len(ids) - missing)
                if missing or extra:
                    problems.append(f"{name} index: {missing} chunks missing, {extra} stale entries")
            integrity = self._conn.execute("PRAGMA quick_check").fetchone()[0]
            if integrity != "ok":
                problems.append(f"SQLite quick_check: {integrity}")
            for extension in self.extensions:
                problems.extend(extension.verify(self._conn))
        return {"ok": not problems, "problems": problems, "chunks": len(ids), **{
            k: v for k, v in self.stats().items() if k in ("documents", "failed", "duplicates")}}

    # ------------------------------------------------------------------ re-embedding

    def reembed_pending(self) -> dict[str, Any] | None:
        """The target of an interrupted re-embed and how many vectors it has computed (None: none pending)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_REEMBED_TARGET,)).fetchone()
        if row is None:
            return None
        done = self._conn.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0]
        return {**json.loads(row[0]), "vectors_done": int(done)}

    def reembed(
        self, encode: EncodeFn, *, name: str, dim: int, checkpoint: str = "", batch_size: int = 256,
        on_progress: ReembedProgress | None = None, precision: str | None = None, swap: bool = True,
    ) -> dict[str, Any]:
        """Switch every chunk to vectors from another embedder without a moment of inconsistency.

        New vectors are committed batch by batch into ``reembed_vectors`` beside the live ones, so a crash
        costs only the current batch: the KB stays on the old embedder, and a re-run with the same target
        (name, dim, checkpoint) resumes where it stopped; another target starts over. When every chunk has
        a new vector, one transaction swaps the vectors and the recorded embedder; the new dense index is
        then saved with one rename (were that lost, the index is rebuilt from the database on open).
        ``precision`` (fp32, int8) is recorded with the embedder when given; it is part of the target too.
        With ``swap`` False the new vectors are only staged (see ``staged_vectors``): a later call with the same
        target swaps them without encoding again, ``cancel_reembed`` drops them.
        """
        if batch_size <= 0:
            raise StoreError("batch_size must be greater than 0.")
        if dim <= 0:
            raise StoreError("dim must be greater than 0.")
        target = {"embedder": name, "dim": dim, "checkpoint": checkpoint}
        if precision is not None:
            target["precision"] = precision
        started = time.perf_counter()
        with self._lock:
            pending = self.reembed_pending()
            resumed = pending is not None and {k: pending.get(k) for k in target} == target
            with self._write():
                if not resumed:
                    self._conn.execute("DELETE FROM reembed_vectors")
                    self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                       (_REEMBED_TARGET, json.dumps(target)))
                # Vectors of chunks deleted since an interrupted run are of no use.
                self._conn.execute("DELETE FROM reembed_vectors WHERE chunk_id NOT IN (SELECT id FROM chunks)")
            reused = self._conn.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0]
            encoded = 0
            if not swap:
                encoded = self._reembed_batches(encode, dim, batch_size, on_progress)
                return {"embedder": name, "dim": dim, "checkpoint": checkpoint, "precision": precision,
                        "staged": self._staged_count(), "resumed": resumed, "reused_vectors": int(reused),
                        "encoded_vectors": encoded, "seconds": round(time.perf_counter() - started, 2)}
            while True:
                encoded += self._reembed_batches(encode, dim, batch_size, on_progress)
                with self._write():
                    # Chunks ingested meanwhile by another process are embedded before the swap, not after.
                    if self._missing_reembed_count():
                        continue
                    swapped = self._swap_vectors(target)
                    heads = self._heads()
                break
            self.embedder_name, self.dim = name, dim
            self._dense = self._dense_index(dim, **self._hnsw_params)
            self._dense_seen = (0, 0)
            self._dirty = True
            self.refresh()
            self.save_indexes()
        log.info("re-embedded %d chunks with %s (%d reused from an interrupted run) in %.1fs",
                 swapped, name, reused, time.perf_counter() - started)
        return {"embedder": name, "dim": dim, "checkpoint": checkpoint, "precision": precision,
                "chunks": swapped, "resumed": resumed,
                "reused_vectors": int(reused), "encoded_vectors": encoded, "chunk_seq": heads[0],
                "seconds": round(time.perf_counter() - started, 2)}

    def _staged_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM reembed_vectors").fetchone()[0])

    def staged_vectors(self) -> tuple[list[int], np.ndarray]:
        """Chunk ids and the new vectors a re-embed in progress has computed so far (none: empty)."""
        rows = self._conn.execute("SELECT chunk_id, vector FROM reembed_vectors ORDER BY chunk_id").fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return [int(r[0]) for r in rows], vectors

    def cancel_reembed(self) -> None:
        """Drop a re-embed in progress (its staged vectors and target); the live vectors were never touched."""
        with self._write():
            self._conn.execute("DELETE FROM reembed_vectors")
            self._conn.execute("DELETE FROM meta WHERE key = ?", (_REEMBED_TARGET,))

    def _missing_reembed_count(self) -> int:
        return int(self._conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM reembed_vectors r WHERE r.chunk_id = c.id)"
        ).fetchone()[0])

    def _reembed_batches(self, encode: EncodeFn, dim: int, batch_size: int,
                         on_progress: ReembedProgress | None) -> int:
        total = self.count()
        done = total - self._missing_reembed_count()
        encoded = 0
        last = 0
        if on_progress:
            on_progress(done, total)
        while True:
            # Keyset paging with a primary-key probe per row: each batch costs its own size, not the KB's.
            rows = self._conn.execute(
                "SELECT c.id, c.text, c.meta FROM chunks c WHERE c.id > ? AND NOT EXISTS"
                " (SELECT 1 FROM reembed_vectors r WHERE r.chunk_id = c.id) ORDER BY c.id LIMIT ?",
                (last, batch_size),
            ).fetchall()
            if not rows:
                return encoded
            last = rows[-1]["id"]
            context = self.chunk_context
            texts = [embedding_text(r["text"], ChunkMeta.model_validate_json(r["meta"]), context) for r in rows]
            vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)
            if vectors.shape != (len(rows), dim):
                raise EmbedderMismatchError(
                    f"{self.directory}: the new embedder returned vectors of shape {vectors.shape}, expected "
                    f"({len(rows)}, {dim}) — check that its dimension is {dim}"
                )
            with self._write():
                self._conn.executemany(
                    "INSERT OR REPLACE INTO reembed_vectors (chunk_id, vector) VALUES (?, ?)",
                    [(r["id"], vectors[i].tobytes()) for i, r in enumerate(rows)],
                )
            encoded += len(rows)
            done += len(rows)
            if on_progress:
                on_progress(done, max(total, done))

    def _swap_vectors(self, target: dict[str, Any]) -> int:
        """Inside a write transaction: new vectors and the new embedder's record replace the old ones."""
        swapped = self._conn.execute(
            "UPDATE chunks SET vector = (SELECT r.vector FROM reembed_vectors r WHERE r.chunk_id = chunks.id)"
        ).rowcount
        for key, value in (("embedder", target["embedder"]), ("dim", target["dim"]),
                           (_CHECKPOINT, target["checkpoint"])):
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))
        if "precision" in target:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (PRECISION_KEY, target["precision"]))
        self._conn.execute("DELETE FROM meta WHERE key = ?", (_REEMBED_TARGET,))
        self._conn.execute("DELETE FROM reembed_vectors")
        return int(swapped)

    def rebuild_indexes(self) -> None:
        """Drop the derived indexes and rebuild them from the database."""
        with self._lock:
            k1, b = self._bm25_params
            self._dense, self._dense_seen = self._dense_index(self.dim, **self._hnsw_params), (0, 0)
            self._sparse, self._sparse_seen = BM25Index(k1=k1, b=b), (0, 0)
            self._dirty = True
            self._refresh(opening=True)
            self.save_indexes()


class CatchUpLog:
    """What a derived index's catch-up with the database says while it runs. Rebuilding one from scratch (a new
    BM25 parameter, a damaged or missing index folder) can read millions of rows when a KB opens: it is announced
    with the number of chunks, reports how far it got every ``every`` seconds, and says when it is done, at warning
    level so the CLI shows it without ``-v``. An ordinary catch-up (another process's writes) logs one line at info
    level when it was large."""

    every = 5.0  # seconds between reports

    def __init__(self, what: str, total: int, *, rebuilding: bool) -> None:
        self.what, self.total, self.rebuilding = what, total, rebuilding
        self.started = self.last = time.perf_counter()
        self.done = 0
        if rebuilding and total:
            log.warning("rebuilding the %s from the database: %d chunks", what, total)

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if self.rebuilding and now - self.last >= self.every:
            self.last = now
            log.warning("rebuilding the %s: %d of %d chunks (%.0f s)", self.what, self.done, self.total,
                        now - self.started)

    def finish(self, removed: int) -> None:
        seconds = time.perf_counter() - self.started
        if self.rebuilding and self.total and seconds >= self.every:
            log.warning("rebuilt the %s: %d chunks in %.1f s", self.what, self.done, seconds)
        elif self.done > 1000 or removed > 1000:
            log.info("%s caught up: +%d −%d chunks in %.1f s", self.what, self.done, removed, seconds)


#: ChunkMeta fields kept in columns of their own beside the stored JSON (set on every fetched hit).
_COLUMN_FIELDS = frozenset({"source", "document_id", "chunk_index", "source_type", "page_number", "language"})


def fetched_hit(uid: str, document_id: str, chunk_index: int, text: str, source_type: str | None,
                page_number: int | None, language: str | None, meta_json: str | bytes, uri: str) -> Hit:
    """A hit (score 0) from a stored chunk row: the columns in the order every store selects them, and the rest of
    its metadata as stored JSON text. The JSON is validated in one pass and the columns, typed by the schema, are set
    beside it (parsing the JSON and validating the merged dict took twice as long: 3 of the 8 ms to fetch 200
    hits)."""
    meta = ChunkMeta.model_validate_json(meta_json)
    meta.__dict__.update(source=uri, document_id=document_id, chunk_index=chunk_index, source_type=source_type or "",
                         page_number=page_number, language=language)
    meta.__pydantic_fields_set__.update(_COLUMN_FIELDS)
    return Hit(chunk_id=uid, document_id=document_id, source=uri, text=text, score=0.0, meta=meta)


def chunk_tokens(chunk: Chunk, context: int = 0, *, header_boost: int = HEADER_BOOST) -> list[str]:
    """BM25 terms of a chunk made with context version ``context`` (``types.CHUNK_CONTEXT_VERSION``)."""
    if context >= 1:
        # The context header is a field of its own, counted header_boost times, as BM25F weighs a title.
        header = tokenize("\n".join(context_header(chunk.meta)))
        return tokenize(chunk.text) + header * header_boost
    # Section titles are part of what a chunk is about, so they are indexed with its text.
    title = chunk.meta.section_title or ""
    prefix = "" if not title or chunk.text.startswith(title) else title + "\n"
    return tokenize(prefix + chunk.text)


def _record(row: sqlite3.Row) -> DocumentRecord:
    data = dict(row)
    data["metadata"] = json.loads(data.get("metadata") or "{}")
    return DocumentRecord(**data)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
