"""The Milvus store: the catalog (documents, chunks, vectors, BM25) stays in the KB folder's SQLite; the vectors
and every filterable field live in a Milvus collection, kept in step with the catalog like the embedded HNSW index.

``milvus://host:19530`` is a Milvus server (``milvus://user:password@host:19530`` with authentication);
``milvus:///path/to/file.db`` is Milvus Lite. Query options: ``sparse=milvus`` ranks the sparse side with
Milvus' own BM25 function (Milvus >= 2.5 or Lite) over ragtune's tokens instead of the catalog's BM25 index;
``consistency=`` is Milvus' consistency level of searches: the default ``Session`` sees this process's own writes
at once (``Strong`` waits for every writer's, measured ~300 ms a search on Milvus 2.3; ``Bounded`` lags).
``seal_rows=`` (default 1024) and ``seal_timeout=`` (seconds, default 300): when an ingest, migration or re-embed
has written at least ``seal_rows`` rows, it ends by flushing them and waiting until the server searches them
through the HNSW index. Until then a server searches new rows in growing segments, whose interim IVF index
(Milvus' default ``nprobe`` 16 of 128 lists) ignores ``ef``: measured on SciFact, 79 % of the exact top 200 against
99.8 % once sealed. ``seal_rows=0`` never waits (the server seals on its own schedule).

The catalog is the source of truth: a crash between its commit and the Milvus write is caught up on the next
open (the collection is written with upserts keyed by the catalog's chunk ids, so a replay is harmless), and
``kb verify --repair`` rebuilds the collection from the catalog.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ragtune.errors import ConfigError, StoreError
from ragtune.files import atomic_write_json
from ragtune.store.base import FilterSpec, Ranking
from ragtune.store.filters import compile_milvus, compile_predicate, validate_filter
from ragtune.store.local import DocumentUpdate, LocalStore, chunk_tokens
from ragtune.store.postgres import redact
from ragtune.store.text import tokenize
from ragtune.types import Chunk

if TYPE_CHECKING:
    from ragtune.settings import Settings

log = logging.getLogger(__name__)

_INSTALL_HINT = "install the 'milvus' extra (pip install 'ragtune[milvus]')"
_MAX_TOPK = 16384  # Milvus' largest limit
# A filter Milvus cannot express exactly is applied to this many times k candidates.
_SUPERSET_FACTOR = 10
_STATE_FILE = "milvus.json"
_BATCH = 1000
#: (store chunk id, vector, metadata of ChunkMeta without nulls, BM25 text) for each chunk id that still exists.
RowsFn = Callable[[Sequence[int]], list[tuple[int, np.ndarray, dict[str, Any], str]]]


def bm25_text(tokens: Iterable[str]) -> str:
    """ragtune's BM25 tokens as words any Milvus analyzer keeps whole: a short hash of each, in ASCII, so Milvus
    scores the tokens of ragtune's analyzer (Snowball stems, jieba words) and not its own."""
    return " ".join("t" + hashlib.blake2b(token.encode("utf-8"), digest_size=6).hexdigest() for token in tokens)


def served_by_index(segment: Any) -> bool:
    """A loaded segment the server searches through its vector index (the state is an enum or a string)."""
    state = getattr(segment.state, "name", str(segment.state))
    return state.rsplit(".", 1)[-1] == "Sealed" and bool(segment.index_name)


def collection_name(name: str) -> str:
    """A Milvus collection name for a KB (letters, digits and underscores, unique per name)."""
    slug = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:40] or "kb"
    return f"ragtune_{slug}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


@dataclass(frozen=True)
class MilvusTarget:
    """Where a collection lives and how to talk to it."""

    uri: str
    token: str
    collection: str
    sparse: str = "catalog"  # or "milvus"
    consistency: str = "Session"
    seal_rows: int = 1024
    seal_timeout: float = 300.0

    @classmethod
    def from_url(cls, url: str, collection: str) -> MilvusTarget:
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        sparse = options.get("sparse", "catalog")
        if sparse not in ("catalog", "milvus"):
            raise ConfigError(f"{redact(url)}: sparse={sparse!r} — use sparse=milvus (Milvus' BM25) or leave it out "
                              "(the catalog's BM25)")
        consistency = options.get("consistency", "Session")
        try:
            seal_rows = int(options.get("seal_rows", 1024))
            seal_timeout = float(options.get("seal_timeout", 300))
        except ValueError:
            raise ConfigError(f"{redact(url)}: seal_rows must be a whole number of rows and seal_timeout seconds "
                              "(e.g. seal_rows=1024&seal_timeout=300)") from None
        if parts.hostname:
            token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}" if parts.username else ""
            uri = f"http://{parts.hostname}:{parts.port or 19530}"
        else:  # Milvus Lite: a local file
            if not parts.path:
                raise ConfigError(f"{url!r} names no Milvus — use milvus://host:19530 or milvus:///path/to/file.db")
            uri, token = parts.path, ""
        return cls(uri, token, collection, sparse, consistency, max(seal_rows, 0), max(seal_timeout, 0.0))

    @property
    def lite(self) -> bool:
        """Milvus Lite (a local file): no segments to hand off; a flush makes rows searchable."""
        return not self.uri.startswith("http")


_CLIENTS: dict[tuple[str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(target: MilvusTarget) -> Any:
    """One client per server in this process (connecting takes seconds; the client is thread-safe)."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise ConfigError(f"the Milvus store needs pymilvus — {_INSTALL_HINT}") from None
    with _CLIENTS_LOCK:
        client = _CLIENTS.get((target.uri, target.token))
        if client is None:
            try:
                client = MilvusClient(uri=target.uri, token=target.token)
            except Exception as exc:
                raise StoreError(f"cannot reach Milvus at {target.uri} ({exc}) — check that it runs and the URL"
                                 ) from None
            _CLIENTS[(target.uri, target.token)] = client
        return client


def drop_collection(url: str, name: str) -> None:
    """Delete the Milvus collection of the knowledge base ``name`` (its catalog is the KB folder)."""
    target = MilvusTarget.from_url(url, collection_name(name))
    client = _client(target)
    if client.has_collection(target.collection):
        client.drop_collection(target.collection)


class MilvusIndex:
    """The dense side of a knowledge base in a Milvus collection, with the interface of ``hnsw.DenseIndex``.

    ``add`` upserts rows with their metadata (asked of the catalog through ``rows``), ``remove`` deletes by id;
    ``search_expression`` runs a filtered search with a compiled filter expression.
    """

    def __init__(self, client: Any, target: MilvusTarget, rows: RowsFn, dim: int, *, m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128) -> None:
        self.client = client
        self.target = target
        self.rows = rows
        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._ids: np.ndarray | None = None  # loaded only when membership is asked (verify)
        self._unsealed = 0  # rows written since the last seal

    # --- the collection

    def create(self) -> None:
        """A new, empty collection (an existing one of the same name is dropped: it is derived data)."""
        from pymilvus import DataType, Function, FunctionType

        name = self.target.collection
        if self.client.has_collection(name):
            self.client.drop_collection(name)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("meta", DataType.JSON)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="IP",
                        params={"M": self.m, "efConstruction": self.ef_construction})
        if self.target.sparse == "milvus":
            # ragtune's tokens, each spelt as one ASCII word (see bm25_text): Milvus' BM25 over ragtune's analyzer.
            schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                             analyzer_params={"tokenizer": "standard"})
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                         output_field_names=["sparse"]))
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        # With index parameters the collection is created loaded.
        self.client.create_collection(name, schema=schema, index_params=index,
                                      consistency_level=self.target.consistency)

    def __len__(self) -> int:
        result = self.client.query(self.target.collection, filter="id >= 0", output_fields=["count(*)"],
                                   consistency_level=self.target.consistency)
        return int(result[0]["count(*)"]) if result else 0

    def __contains__(self, chunk_id: object) -> bool:
        if self._ids is None:
            self._ids = np.sort(self._all_ids())
        position = int(np.searchsorted(self._ids, chunk_id))  # type: ignore[call-overload]
        return position < len(self._ids) and int(self._ids[position]) == chunk_id

    def _all_ids(self) -> np.ndarray:
        ids: list[int] = []
        iterator = self.client.query_iterator(self.target.collection, batch_size=_MAX_TOPK, filter="id >= 0",
                                              output_fields=["id"])
        try:
            while batch := iterator.next():
                ids.extend(row["id"] for row in batch)
        finally:
            iterator.close()
        return np.asarray(ids, dtype=np.int64)

    # --- writes

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Upsert these chunks (their metadata comes from the catalog, so ``vectors`` only checks the shape)."""
        ids = list(ids)
        if len(vectors) and np.asarray(vectors).shape[1] != self.dim:
            raise StoreError(f"vectors have {np.asarray(vectors).shape[1]} dimensions, the collection {self.dim}")
        self.upsert(ids)

    def upsert(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), _BATCH):
            rows = [self._row(*row) for row in self.rows(ids[start:start + _BATCH])]
            if rows:
                self.client.upsert(self.target.collection, rows)
                self._unsealed += len(rows)
        if self._ids is not None:
            self._ids = np.union1d(self._ids, np.asarray(ids, dtype=np.int64))

    def _row(self, chunk_id: int, vector: np.ndarray, meta: dict[str, Any], text: str) -> dict[str, Any]:
        row = {"id": int(chunk_id), "vector": np.asarray(vector, dtype=np.float32).tolist(), "meta": meta}
        if self.target.sparse == "milvus":
            row["text"] = text
        return row

    def remove(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), _BATCH):
            self.client.delete(self.target.collection, ids=ids[start:start + _BATCH])
        if self._ids is not None and ids:
            self._ids = np.setdiff1d(self._ids, np.asarray(ids, dtype=np.int64))

    def ids_of_document(self, document_id: str) -> list[int]:
        expression, _ = compile_milvus({"document_id": document_id})
        rows = self.client.query(self.target.collection, filter=expression, output_fields=["id"],
                                 consistency_level=self.target.consistency, limit=_MAX_TOPK)
        return [int(r["id"]) for r in rows]

    # --- searches

    def seal(self) -> bool:
        """Flush the rows written so far and wait (up to the target's ``seal_timeout``) until the server searches
        all of them through the HNSW index: built on sealed segments and those segments loaded. False on timeout
        (searches stay right, only approximate on the rows not yet handed off)."""
        name = self.target.collection
        started = time.monotonic()
        self.client.flush(name)
        self._unsealed = 0
        if self.target.lite:
            return True
        while True:
            try:
                info = self.client.describe_index(name, "vector") or {}
                segments = self.client.list_loaded_segments(name)
            except Exception as exc:  # a server without these calls: the flush is all we can do
                log.warning("Milvus collection %s flushed; cannot follow its indexing (%s)", name, exc)
                return False
            total = int(info.get("total_rows", 0))
            indexed = int(info.get("indexed_rows", 0))
            served = sum(int(s.num_rows) for s in segments if served_by_index(s))
            if indexed >= total and served >= total:
                log.info("Milvus collection %s sealed: %d rows searched through HNSW (%.1fs)", name, total,
                         time.monotonic() - started)
                return True
            if time.monotonic() - started > self.target.seal_timeout:
                log.warning("Milvus collection %s: %d of %d rows indexed and %d served from sealed segments after "
                            "%.0fs; the rest are searched approximately until the server hands them off",
                            name, indexed, total, served, self.target.seal_timeout)
                return False
            time.sleep(0.5)

    def search(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``DenseIndex.search``: the ``k`` best ids and scores, restricted to ``allowed`` ids when given."""
        expression = None
        if allowed is not None:
            if not allowed:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            expression = f"id in [{', '.join(str(int(i)) for i in sorted(allowed))}]"
        found = self.search_expression(vector, k, expression)
        return (np.asarray([i for i, _, _ in found], dtype=np.int64),
                np.asarray([s for _, s, _ in found], dtype=np.float32))

    def search_expression(self, vector: np.ndarray, k: int, expression: str | None, *, with_meta: bool = False
                          ) -> list[tuple[int, float, dict[str, Any]]]:
        limit = min(k, _MAX_TOPK)
        # ef twice the limit: at ef = k Milvus' HNSW found 98.5 % of the exact top 200 on SciFact, at 2k 99.8 %
        # (hnswlib, the embedded store, 99.3 % at ef = k).
        params = {"metric_type": "IP", "params": {"ef": min(max(self.ef_search, 2 * limit), _MAX_TOPK)}}
        result = self.client.search(
            self.target.collection, data=[np.asarray(vector, dtype=np.float32).ravel().tolist()],
            filter=expression or "", limit=limit, output_fields=["meta"] if with_meta else [],
            search_params=params, anns_field="vector", consistency_level=self.target.consistency,
        )
        return [(int(hit["id"]), float(hit["distance"]), hit.get("entity", {}).get("meta") or {})
                for hit in (result[0] if result else [])]

    def sparse_expression(self, text: str, k: int, expression: str | None, *, with_meta: bool = False
                          ) -> list[tuple[int, float, dict[str, Any]]]:
        result = self.client.search(
            self.target.collection, data=[text], filter=expression or "", limit=min(k, _MAX_TOPK),
            output_fields=["meta"] if with_meta else [], search_params={"metric_type": "BM25"}, anns_field="sparse",
            consistency_level=self.target.consistency,
        )
        return [(int(hit["id"]), abs(float(hit["distance"])), hit.get("entity", {}).get("meta") or {})
                for hit in (result[0] if result else [])]

    # --- persistence of what the collection covers (the collection persists itself)

    def save(self, directory: Path, meta: dict[str, Any]) -> None:
        atomic_write_json(Path(directory) / _STATE_FILE,
                          {**meta, "collection": self.target.collection, "dim": self.dim}, indent=None)
        if self.target.seal_rows and self._unsealed >= self.target.seal_rows:
            self.seal()


class MilvusIndexFactory:
    """Makes and reopens the ``MilvusIndex`` of one KB, as the embedded store makes and loads its HNSW index."""

    def __init__(self, target: MilvusTarget, rows: RowsFn) -> None:
        self.target = target
        self.rows = rows
        self.client = _client(target)
        self.current: MilvusIndex | None = None

    def __call__(self, dim: int, *, m: int = 32, ef_construction: int = 200, ef_search: int = 128,
                 **_: Any) -> MilvusIndex:
        """A fresh, empty collection: the catalog will fill it."""
        index = MilvusIndex(self.client, self.target, self.rows, dim, m=m, ef_construction=ef_construction,
                            ef_search=ef_search)
        index.create()
        self.current = index
        return index

    def load(self, directory: Path, *, ef_search: int = 128, **_: Any) -> tuple[MilvusIndex, dict[str, Any]]:
        """The existing collection and the catalog position it covers (StoreError: rebuild it)."""
        path = Path(directory) / _STATE_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path} is unreadable ({exc})") from None
        if meta.get("collection") != self.target.collection or not self.client.has_collection(self.target.collection):
            raise StoreError(f"Milvus collection {self.target.collection} is missing")
        self.client.load_collection(self.target.collection)
        index = MilvusIndex(self.client, self.target, self.rows, int(meta["dim"]), ef_search=ef_search)
        self.current = index
        return index, meta


class MilvusStore(LocalStore):
    """A knowledge base whose catalog is the folder's SQLite (see ``LocalStore``) and whose vectors and filterable
    metadata live in Milvus; dense search and (with ``sparse=milvus``) sparse search run in Milvus, with the filter
    language compiled to Milvus expressions."""

    def __init__(self, url: str, name: str, directory: Path, *, embedder_name: str, dim: int, create: bool = False,
                 settings: Settings, checkpoint: str = "") -> None:
        self.url = url
        self.name = name
        self.target = MilvusTarget.from_url(url, collection_name(name))
        self._factory = MilvusIndexFactory(self.target, self._rows)
        s = settings
        super().__init__(
            directory, embedder_name=embedder_name, dim=dim, create=create, bm25_k1=s.bm25_k1, bm25_b=s.bm25_b,
            hnsw_m=s.hnsw_m, hnsw_ef_construction=s.hnsw_ef_construction, hnsw_ef_search=s.hnsw_ef_search,
            exact_search_below=s.exact_search_below, threads=s.num_threads or 1, checkpoint=checkpoint,
            dense_index=self._factory,
        )

    @property
    def index(self) -> MilvusIndex:
        if self._factory.current is None:
            raise StoreError(f"{self.directory}: the Milvus index is not open")
        return self._factory.current

    def _rows(self, ids: Sequence[int]) -> list[tuple[int, np.ndarray, dict[str, Any], str]]:
        hits = self.get(ids)
        vectors = self.vectors([hit.chunk_id for hit in hits.values()])
        context = self.chunk_context
        rows = []
        for chunk_id, hit in hits.items():
            meta = {k: v for k, v in hit.meta.model_dump().items() if v is not None}
            text = ""
            if self.target.sparse == "milvus":  # the tokens the catalog's BM25 indexes, as ingest made them
                chunk = Chunk(text=hit.text, start=0, end=len(hit.text), meta=hit.meta)
                text = bm25_text(chunk_tokens(chunk, context))
            rows.append((chunk_id, vectors[hit.chunk_id], meta, text))
        return rows

    # --- writes: the catalog's, plus chunks handed to a duplicate get their new document in Milvus

    def _with_duplicates(self, document_ids: Iterable[str]) -> list[str]:
        """Those of ``document_ids`` that duplicates point to (their chunks are handed over when they go)."""
        originals = {d.duplicate_of for d in self.documents("duplicate")}
        return [doc for doc in document_ids if doc in originals]

    def _retarget(self, originals: Sequence[str]) -> None:
        for original in originals:
            ids = self.index.ids_of_document(original)
            if ids:
                self.index.upsert(ids)

    def apply(self, updates: Sequence[DocumentUpdate]) -> None:
        handed = self._with_duplicates(u.record.id for u in updates if u.record.status != "failed")
        super().apply(updates)
        self._retarget(handed)

    def delete(self, document_ids: Iterable[str]) -> int:
        document_ids = list(document_ids)
        handed = self._with_duplicates(document_ids)
        count = super().delete(document_ids)
        self._retarget(handed)
        return count

    def update_meta(self, document_id: str, values: dict[str, Any]) -> bool:
        """Set document-level metadata (access groups) in the catalog, then on the document's rows in Milvus,
        whose filter expressions read them."""
        if not super().update_meta(document_id, values):
            return False
        ids = self.index.ids_of_document(document_id)
        if ids:
            self.index.upsert(ids)
        return True

    # --- searches

    def dense_search(self, vector: np.ndarray, k: int, filter: FilterSpec = None) -> Ranking:
        spec = validate_filter(filter)
        expression, exact = compile_milvus(spec)
        self.refresh()
        if exact:
            return [(i, s) for i, s, _ in self.index.search_expression(vector, k, expression)]
        keep = compile_predicate(spec)
        found = self.index.search_expression(vector, k * _SUPERSET_FACTOR, expression, with_meta=True)
        return [(i, s) for i, s, meta in found if keep(meta)][:k]

    def sparse_search(self, text: str, k: int, filter: FilterSpec = None) -> Ranking:
        if self.target.sparse != "milvus":
            return super().sparse_search(text, k, filter)
        tokens = tokenize(text)
        if not tokens:
            return []
        spec = validate_filter(filter)
        expression, exact = compile_milvus(spec)
        self.refresh()
        query = bm25_text(tokens)
        if exact:
            return [(i, s) for i, s, _ in self.index.sparse_expression(query, k, expression)]
        keep = compile_predicate(spec)
        found = self.index.sparse_expression(query, k * _SUPERSET_FACTOR, expression, with_meta=True)
        return [(i, s) for i, s, meta in found if keep(meta)][:k]

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "store": redact(self.url), "store_name": self.name,
                "collection": self.target.collection, "sparse": self.target.sparse}
