"""Milvus' own BM25 (`?sparse=milvus`, Milvus >= 2.5; here Milvus Lite 3): over ragtune's tokens it ranks close to
ragtune's BM25, and the sparse side takes the whole filter language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conformance_cases import COMMON, corpus, store_maker
from test_contract import CHUNK_FILTERS, expected, uids

from ragtune.store.bm25 import BM25Index
from ragtune.store.factory import parse_store
from ragtune.store.milvus import MilvusStore, bm25_text
from ragtune.store.text import tokenize


@pytest.mark.integration
def test_milvus_bm25_ranks_like_ragtune_and_filters_like_everyone(request: pytest.FixtureRequest,
                                                                   tmp_path: Path) -> None:
    make, opened = store_maker("milvus-lite", request, tmp_path)
    store = make()
    try:
        assert isinstance(store, MilvusStore) and store.target.sparse == "milvus"
        updates = corpus()
        store.apply(updates)
        store.index.client.flush(store.target.collection)  # Milvus Lite indexes inserts on flush
        chunks = [c.id for u in updates for c in u.chunks]
        reference = BM25Index()
        reference.add(list(range(len(chunks))), [t for u in updates for t in u.chunk_tokens()])
        overlaps = []
        for query in ("river mountain", "refund warranty clause", "年假制度", "alpha omega tenant", "omega"):
            ids, scores = reference.search(tokenize(query), 10)
            got = uids(store, store.sparse_search(query, 10))
            want = [chunks[i] for i in ids.tolist()]
            # The same tokens and BM25, but Milvus normalises lengths its own way: close, not identical.
            overlaps.append(len(set(got) & set(want)) / len(want))
        assert np.mean(overlaps) >= 0.7 and min(overlaps) >= 0.5, overlaps
        for filter in CHUNK_FILTERS[::3]:
            assert set(uids(store, store.sparse_search(COMMON, 1000, filter))) == expected(updates, filter), filter
    finally:
        for each in opened:
            each.close()


@pytest.mark.unit
def test_tokens_become_words_any_analyzer_keeps_and_the_url_is_read() -> None:
    words = bm25_text(["跑步", "run", "covid", "19"]).split()
    assert len(words) == 4 and all(w.isascii() and w.isalnum() and w[0] == "t" for w in words)
    assert bm25_text(["run"]) == words[1]
    location = parse_store("milvus:///var/data/kb.db?sparse=milvus", "kb")
    assert (location.kind, location.url) == ("milvus", "milvus:///var/data/kb.db?sparse=milvus")
