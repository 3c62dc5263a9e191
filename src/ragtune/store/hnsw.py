"""Approximate nearest-neighbour index over chunk vectors (hnswlib), persisted beside the SQLite catalog."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import StoreError

log = logging.getLogger(__name__)

_INDEX_FILE = "hnsw.bin"
_META_FILE = "meta.json"


class DenseIndex:
    """Inner-product HNSW over normalised vectors, keyed by integer chunk ids.

    Filtered queries whose allowed set is small are answered exactly (brute force), because graph search
    with a restrictive filter wastes most of its visits; larger allowed sets use hnswlib's filter hook. An index
    of at most ``exact_below`` vectors answers every query exactly, from a matrix kept beside the graph (as the
    Postgres store does): at that size a matrix product costs about what a graph walk does, finds the true nearest
    vectors, and ranks the same whatever order the graph was built in, so a copy of a knowledge base
    (``kb migrate``) returns what the original returns. Ties go to the lower chunk id.
    """

    def __init__(
        self, dim: int, *, m: int = 32, ef_construction: int = 200, ef_search: int = 128,
        exact_below: int = 20000, threads: int = 1, _loaded: Any = None,
    ) -> None:
        if dim <= 0:
            raise StoreError("dim must be greater than 0.")
        import hnswlib

        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_below = exact_below
        self.threads = threads
        if _loaded is None:
            self._index = hnswlib.Index(space="ip", dim=dim)
            self._index.init_index(max_elements=1024, M=m, ef_construction=ef_construction)
        else:
            self._index = _loaded
        self._index.set_ef(ef_search)
        self._ids: set[int] = set()
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, their vectors) for exact search
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._ids

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Add vectors; ids already present are skipped (ids are never reused by the store)."""
        id_array = np.asarray(list(ids), dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(id_array) == 0:
            return
        if vectors.shape != (len(id_array), self.dim):
            raise StoreError(f"expected vectors of shape ({len(id_array)}, {self.dim}), got {vectors.shape}")
        with self._lock:
            fresh = np.array([i not in self._ids for i in id_array.tolist()], dtype=bool)
            if not fresh.any():
                return
            id_array, vectors = id_array[fresh], vectors[fresh]
            needed = self._index.element_count + len(id_array)
            if needed > self._index.get_max_elements():
                self._index.resize_index(max(needed, int(self._index.get_max_elements() * 1.5)))
            self._index.add_items(vectors, id_array, num_threads=self.threads)
            self._ids.update(id_array.tolist())
            self._extend_matrix(id_array, vectors)

    def remove(self, ids: Iterable[int]) -> None:
        """Mark ids deleted; unknown ids are ignored (tombstones may name chunks this index never saw)."""
        with self._lock:
            gone = []
            for chunk_id in ids:
                if chunk_id in self._ids:
                    self._index.mark_deleted(int(chunk_id))
                    self._ids.discard(chunk_id)
                    gone.append(int(chunk_id))
            if gone and self._matrix is not None:
                keep = ~np.isin(self._matrix[0], np.asarray(gone, dtype=np.int64))
                self._matrix = (self._matrix[0][keep], self._matrix[1][keep])

    def search(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine scores of the ``k`` nearest vectors, best first, restricted to ``allowed`` if given."""
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            if len(self._ids) <= self.exact_below or (allowed is not None and len(allowed) <= self.exact_below):
                return self._exact(vector, allowed, k)
            # Large allowed sets go to the graph as they are: intersecting 200k ids with the index's
            # 1M on every query cost more than the search, and the graph only returns indexed ids.
            live = len(allowed) if allowed is not None else len(self._ids)
            k = min(k, live)
            if k <= 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            self._index.set_ef(max(self.ef_search, k))
            filter_fn = allowed.__contains__ if allowed is not None else None
            try:
                labels, distances = self._index.knn_query(vector, k=k, filter=filter_fn, num_threads=1)
            except RuntimeError:
                # hnswlib cannot always fill k results after many deletions; exact search always can.
                return self._exact(vector, allowed, k)
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    def _exact(self, vector: np.ndarray, allowed: set[int] | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the live ids in ``allowed`` (None = every vector), ids ascending so ties go to the lower
        id: from the kept matrix in a small index, else reading just those vectors from the graph."""
        if len(self._ids) <= self.exact_below:
            ids, matrix = self._all()
            if allowed is not None:
                keep = np.isin(ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
                ids, matrix = ids[keep], matrix[keep]
        else:
            live = self._ids if allowed is None else allowed & self._ids
            if not live:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            ids = np.sort(np.fromiter(live, dtype=np.int64, count=len(live)))
            matrix = np.asarray(self._index.get_items(ids, return_type="numpy"), dtype=np.float32)
        if len(ids) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = matrix @ vector[0]
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((ids[top], -scores[top]))]
        return ids[top], scores[top].astype(np.float32)

    def _extend_matrix(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Keep the exact-search matrix in step with an add (hnswlib keeps inner-product vectors as given), or drop
        it once the index outgrows exact search: re-reading 20,000 vectors from the graph takes half a second."""
        if self._matrix is None:
            return
        if len(self._ids) > self.exact_below:
            self._matrix = None
            return
        all_ids = np.concatenate([self._matrix[0], ids])
        matrix = np.concatenate([self._matrix[1], vectors])
        if len(all_ids) > 1 and not np.all(all_ids[1:] > all_ids[:-1]):
            order = np.argsort(all_ids, kind="stable")
            all_ids, matrix = all_ids[order], matrix[order]
        self._matrix = (all_ids, matrix)

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live id (ascending) and its vector, read from the graph at the first exact search and kept in step
        with adds and removals after it."""
        if self._matrix is None:
            ids = np.array(sorted(self._ids), dtype=np.int64)
            matrix = (np.asarray(self._index.get_items(ids, return_type="numpy"), dtype=np.float32) if len(ids)
                      else np.zeros((0, self.dim), dtype=np.float32))
            self._matrix = (ids, matrix)
        return self._matrix

    def save(self, directory: Path, meta: dict[str, Any]) -> None:
        """Write index and meta to a temporary directory, then swap it in with one rename."""
        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with self._lock:
            self._index.save_index(str(tmp / _INDEX_FILE))
            info = {
                "dim": self.dim, "m": self.m, "ef_construction": self.ef_construction,
                "count": len(self._ids), "elements": self._index.element_count, "meta": meta,
            }
            (tmp / _META_FILE).write_text(json.dumps(info))
            np.save(tmp / "ids.npy", np.fromiter(self._ids, dtype=np.int64, count=len(self._ids)))
        _swap_in(tmp, directory)

    @classmethod
    def load(
        cls, directory: Path, *, ef_search: int = 128, exact_below: int = 20000, threads: int = 1
    ) -> tuple[DenseIndex, dict[str, Any]]:
        """Load a saved index; raises StoreError when it is missing or unreadable (the caller rebuilds)."""
        directory = Path(directory)
        try:
            info = json.loads((directory / _META_FILE).read_text())
            ids = np.load(directory / "ids.npy")
            import hnswlib

            raw = hnswlib.Index(space="ip", dim=info["dim"])
            raw.load_index(str(directory / _INDEX_FILE), max_elements=int(info["elements"]) + 1024)
            index = cls(
                info["dim"], m=info["m"], ef_construction=info["ef_construction"], ef_search=ef_search,
                exact_below=exact_below, threads=threads, _loaded=raw,
            )
            index._ids = set(ids.tolist())
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise StoreError(f"dense index at {directory} is missing or unreadable ({exc})") from exc
        return index, info["meta"]


def _swap_in(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` by ``tmp`` so a reader sees the old or the new index, never a mix."""
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)
