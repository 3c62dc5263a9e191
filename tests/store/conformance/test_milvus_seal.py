"""A large write to a Milvus server ends searched through the HNSW index, not the growing segments' interim index.

Milvus searches fresh rows in growing segments through an interim IVF index that ignores ``ef`` (nprobe 16 of 128
lists by default): on SciFact that found 79 % of the exact top 200. An ingest that wrote ``seal_rows`` rows or more
therefore ends by flushing and waiting until the server serves them from indexed, sealed segments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conformance_cases import DIM, EMBEDDER, document, unit
from engines import unique_name

from ragtune.errors import ConfigError
from ragtune.settings import load_settings
from ragtune.store.factory import StoreLocation, open_store
from ragtune.store.milvus import MilvusStore, MilvusTarget, served_by_index

pytestmark = pytest.mark.integration


def _open(url: str, folder: Path) -> MilvusStore:
    store = open_store(folder, StoreLocation("milvus", url, unique_name()), load_settings(folder),
                       embedder_name=EMBEDDER, dim=DIM, create=True)
    assert isinstance(store, MilvusStore)
    return store


def _fill(store: MilvusStore, documents: int, per_document: int) -> np.ndarray:
    updates = [document(i, [f"chunk {i}-{j} common" for j in range(per_document)],
                        rng=np.random.default_rng(i)) for i in range(documents)]
    store.apply(updates)
    store.save_indexes()
    return np.concatenate([u.vectors for u in updates])


def _sealed_rows(store: MilvusStore) -> int:
    segments = store.index.client.list_loaded_segments(store.index.target.collection)
    return sum(int(s.num_rows) for s in segments if served_by_index(s))


@pytest.mark.slow
def test_a_large_write_ends_served_by_the_hnsw_index_with_exact_recall(milvus_url: str, tmp_path: Path) -> None:
    store = _open(f"{milvus_url}?seal_rows=1000", tmp_path / "kb")
    try:
        vectors = _fill(store, documents=30, per_document=50)
        assert _sealed_rows(store) == len(vectors) == 1500  # every row searched through HNSW
        # Recall against exact search, over the store's own ids (the catalog numbers chunks in insertion order).
        ids = np.asarray(sorted(store.index._all_ids()))
        recalls = []
        for query in unit(np.random.default_rng(99), 20, DIM):
            exact = set(ids[np.argsort(-(vectors @ query))[:100]].tolist())
            found = {i for i, _ in store.dense_search(query, 100)}
            recalls.append(len(found & exact) / 100)
        assert np.mean(recalls) >= 0.99, recalls
    finally:
        store.close()


def test_seal_rows_zero_leaves_sealing_to_the_server(milvus_url: str, tmp_path: Path) -> None:
    store = _open(f"{milvus_url}?seal_rows=0", tmp_path / "kb")
    try:
        _fill(store, documents=4, per_document=50)
        assert _sealed_rows(store) == 0  # still growing: nothing waited for a flush
        assert len(store.dense_search(unit(np.random.default_rng(5), 1, DIM)[0], 10)) == 10
    finally:
        store.close()


@pytest.mark.parametrize("query", ["seal_rows=many", "seal_timeout=soon"])
def test_bad_seal_options_name_the_fix(query: str) -> None:
    with pytest.raises(ConfigError, match="seal_rows=1024&seal_timeout=300"):
        MilvusTarget.from_url(f"milvus://127.0.0.1:19530?{query}", "c")
