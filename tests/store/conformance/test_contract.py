"""The ChunkStore contract, run against every backend on a real engine: the embedded store, PostgreSQL + pgvector
and a Milvus server. What one backend does, all do: same documents, chunks, ids, filters, rankings and rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conformance_cases import COMMON, DIM, EMBEDDER, StoreMaker, corpus, document, store_maker, unit
from store_cases import INJECTION_VALUES, PARITY_FILTERS

from ragtune.errors import EmbedderMismatchError, FilterError, StoreError
from ragtune.guard.acl import AccessPolicy, viewer_groups
from ragtune.retrieve import HybridRetriever
from ragtune.settings import Settings
from ragtune.store.base import ChunkStore
from ragtune.store.bm25 import BM25Index
from ragtune.store.filters import matches, validate_filter
from ragtune.store.local import CatchUpLog, DocumentUpdate
from ragtune.store.text import tokenize

pytestmark = pytest.mark.integration


def all_ids(store: ChunkStore) -> dict[int, str]:
    """Every chunk as store id -> chunk id (a dense search deeper than the corpus returns them all)."""
    ranking = store.dense_search(np.ones(store.dim, dtype=np.float32) / np.sqrt(store.dim), 10_000)
    hits = store.get([i for i, _ in ranking])
    return {i: hit.chunk_id for i, hit in hits.items()}


def uids(store: ChunkStore, ranking: list[tuple[int, float]]) -> list[str]:
    hits = store.get([i for i, _ in ranking])
    return [hits[i].chunk_id for i, _ in ranking if i in hits]


def expected(updates: list[DocumentUpdate], filter: Any) -> set[str]:
    return {chunk.id for u in updates for chunk in u.chunks if matches(filter, chunk.meta.model_dump())}


# --- writes and the catalog -----------------------------------------------------------------------


def test_documents_chunks_vectors_and_metadata_round_trip(make_store: StoreMaker) -> None:
    store = make_store()
    updates = corpus()
    store.apply(updates)
    stored_chunks = sum(len(u.chunks) for u in updates)
    stats = store.stats()
    assert (stats["documents"], stats["chunks"], stats["embedder"], stats["dim"]) == (len(updates), stored_chunks,
                                                                                      EMBEDDER, DIM)
    assert store.count() == stored_chunks
    assert [d.uri for d in store.documents()] == sorted(u.record.uri for u in updates)
    ids = all_ids(store)
    assert sorted(ids.values()) == sorted(c.id for u in updates for c in u.chunks)
    hits = store.get(list(ids))
    by_uid = {c.id: (c, u) for u in updates for c in u.chunks}
    for hit in hits.values():
        chunk, update = by_uid[hit.chunk_id]
        assert hit.chunk_id == f"{update.record.id}-1-{chunk.meta.chunk_index}"
        assert (hit.text, hit.document_id, hit.source) == (chunk.text, update.record.id, update.record.uri)
        assert hit.meta == chunk.meta
    vectors = store.vectors(list(by_uid))
    for uid, (chunk, update) in by_uid.items():
        np.testing.assert_allclose(vectors[uid], update.vectors[chunk.meta.chunk_index], atol=1e-6)
    first = updates[0]
    assert [h.chunk_id for h in store.document_chunks(first.record.id)] == [c.id for c in first.chunks]
    assert store.get([10**12]) == {} and store.vectors(["no-such-chunk"]) == {}
    record = store.document(first.record.id)
    assert record is not None and (record.status, record.chunk_count, record.title) == ("ok", len(first.chunks),
                                                                                      "Document 0")
    assert store.verify()["ok"]


def test_export_gives_back_what_was_stored(make_store: StoreMaker) -> None:
    store = make_store()
    updates = corpus(6)
    store.apply(updates)
    exported = store.export([u.record.id for u in updates] + ["missing"])
    assert [e.record.id for e in exported] == [u.record.id for u in updates]
    for original, copy in zip(updates, exported, strict=True):
        assert [c.model_dump() for c in copy.chunks] == [c.model_dump() for c in original.chunks]
        np.testing.assert_allclose(copy.vectors, original.vectors, atol=1e-6)
        assert copy.tokens == original.chunk_tokens()
        assert (copy.record.content_hash, copy.record.version, copy.record.metadata) == (
            original.record.content_hash, original.record.version, original.record.metadata)


def test_a_new_version_replaces_the_old_chunks(make_store: StoreMaker) -> None:
    store = make_store()
    store.apply([document(1, ["old words river", "old forest"]), document(2, ["stays harbour"])])
    store.apply([document(1, ["new mountain text"], version=2)])
    assert sorted(all_ids(store).values()) == ["doc001-2-0", "doc002-1-0"]
    assert store.sparse_search("forest", 10) == []
    assert uids(store, store.sparse_search("mountain", 10)) == ["doc001-2-0"]
    record = store.document("doc001")
    assert record is not None and (record.version, record.chunk_count) == (2, 1)
    # The same batch again (an interrupted run replayed) leaves the same state.
    store.apply([document(1, ["new mountain text"], version=2)])
    assert store.count() == 2 and store.verify()["ok"]


def test_delete_removes_documents_from_every_index(make_store: StoreMaker) -> None:
    store = make_store()
    updates = corpus(8)
    store.apply(updates)
    gone = [updates[0].record.id, updates[1].record.id]
    assert store.delete([*gone, "no-such-document"]) == 2
    assert store.delete(gone) == 0
    left = {c.id for u in updates[2:] for c in u.chunks}
    assert set(all_ids(store).values()) == left
    assert set(uids(store, store.sparse_search(COMMON, 100))) == left
    assert {d.id for d in store.documents()} == {u.record.id for u in updates[2:]}
    assert store.count() == len(left) and store.verify()["ok"]


def test_a_duplicate_inherits_the_chunks_of_its_deleted_original(make_store: StoreMaker) -> None:
    store = make_store()
    original = document(1, ["warranty clause text", "tenant deposit"], content_hash="same")
    store.apply([original])
    assert store.find_by_hash("same") is not None and store.find_by_hash("same", exclude="doc001") is None
    copy = document(2, [], content_hash="same")
    copy.record.status, copy.record.duplicate_of = "duplicate", "doc001"
    store.apply([copy])
    assert store.stats()["duplicates"] == 1 and store.count() == 2
    store.delete(["doc001"])
    heir = store.document("doc002")
    assert heir is not None and (heir.status, heir.chunk_count, heir.duplicate_of) == ("ok", 2, None)
    # Filters see the chunks under their new document, on the dense and on the sparse side.
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    for filter in ({"document_id": "doc002"}, {"source": "file:///corpus/doc002.md"}):
        assert len(store.dense_search(query, 10, filter)) == 2
        assert len(store.sparse_search("warranty tenant", 10, filter)) == 2
    assert store.dense_search(query, 10, {"document_id": "doc001"}) == []
    assert {h.document_id for h in store.get([i for i, _ in store.dense_search(query, 10)]).values()} == {"doc002"}
    assert store.verify()["ok"]


def test_a_failed_reingest_keeps_the_last_good_version(make_store: StoreMaker) -> None:
    store = make_store()
    store.apply([document(1, ["invoice refund"])])
    broken = document(1, [], version=2)
    broken.record.status, broken.record.error = "failed", "corrupt file"
    fresh = document(2, [])
    fresh.record.status, fresh.record.error = "failed", "unknown format"
    store.apply([broken, fresh])
    record = store.document("doc001")
    assert record is not None and (record.status, record.error, record.chunk_count) == ("failed", "corrupt file", 1)
    assert uids(store, store.sparse_search("invoice", 5)) == ["doc001-1-0"]
    assert store.stats()["failed"] == 2 and store.count() == 1


def test_vectors_of_another_dimension_are_refused_and_nothing_is_written(make_store: StoreMaker) -> None:
    store = make_store()
    store.apply([document(1, ["river"])])
    bad = document(2, ["mountain"])
    bad.vectors = unit(np.random.default_rng(0), 1, DIM + 1)
    with pytest.raises(EmbedderMismatchError):
        store.apply([document(3, ["forest"]), bad])
    assert [d.id for d in store.documents()] == ["doc001"] and store.count() == 1


def test_reopening_with_another_embedder_is_refused(make_store: StoreMaker) -> None:
    store = make_store("kb-embedder")
    store.apply([document(1, ["river"])])
    with pytest.raises(EmbedderMismatchError):
        make_store("kb-embedder", dim=DIM + 2, create=False)


def test_opening_a_missing_kb_without_create_fails(make_store: StoreMaker) -> None:
    with pytest.raises(StoreError, match="no knowledge base"):
        make_store("missing", create=False)


def test_a_second_handle_sees_the_writes_of_the_first(make_store: StoreMaker) -> None:
    first = make_store("shared-kb")
    first.apply([document(1, ["landlord deposit"])])
    second = make_store("shared-kb", create=False)
    assert uids(second, second.sparse_search("deposit", 5)) == ["doc001-1-0"]
    first.apply([document(2, ["landlord contract"])])
    assert len(second.sparse_search("landlord", 5)) == 2
    assert len(second.dense_search(np.ones(DIM, dtype=np.float32), 5)) == 2
    second.delete(["doc001"])
    assert uids(first, first.sparse_search("landlord", 5)) == ["doc002-1-0"]


def test_catching_up_with_another_handles_writes_is_no_rebuild(
    make_store: StoreMaker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A handle opened on an empty KB reads the other handle's first chunks from zero: an ordinary catch-up, which
    # must not be announced as a rebuild (the reopened-store test checks that a real one is).
    monkeypatch.setattr(CatchUpLog, "every", 0.0)
    first = make_store("empty-kb")
    second = make_store("empty-kb", create=False)
    with caplog.at_level(logging.WARNING, logger="ragtune.store"):
        first.apply(corpus(3))
        assert second.sparse_search("river", 5)
    assert not [r.getMessage() for r in caplog.records if "rebuil" in r.getMessage()]


def test_access_groups_set_in_place_reach_every_filter_and_handle_at_once(make_store: StoreMaker) -> None:
    store = make_store("kb-acl")
    store.apply([document(1, ["payroll salary table"]), document(2, ["holiday salary policy"])])
    other = make_store("kb-acl", create=False)  # another server's handle: its cached filter answers go stale
    policy = AccessPolicy(("*",))  # documents without groups: everyone ('{"acl": null}' in the clause)
    hr = policy.restrict(None, viewer_groups("hr"))
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    for handle in (store, other):  # no groups yet: anyone reads both
        assert len(handle.sparse_search("salary", 10, policy.restrict(None, viewer_groups("sales")))) == 2
        assert len(handle.allowed_ids(hr) or ()) == 2
    assert store.update_meta("doc001", {"acl": ["hr"]}) and not store.update_meta("doc404", {"acl": ["hr"]})
    record = store.document("doc001")
    assert record is not None and record.metadata["acl"] == ["hr"]
    sales = policy.restrict(None, viewer_groups("sales"))
    for handle in (store, other):
        assert uids(handle, handle.sparse_search("salary", 10, sales)) == ["doc002-1-0"]
        assert uids(handle, handle.dense_search(query, 10, sales)) == ["doc002-1-0"]
        assert len(handle.sparse_search("salary", 10, hr)) == 2
        tagged = handle.allowed_ids({"acl": "hr"}) or set()
        assert [h.meta.acl for h in handle.get(sorted(tagged)).values()] == [["hr"]]
    with pytest.raises(StoreError, match="cannot be set per document"):
        store.update_meta("doc001", {"author": "x"})


def test_a_duplicate_that_inherits_chunks_gives_them_its_own_access_groups(make_store: StoreMaker) -> None:
    store = make_store()
    original = document(1, ["warranty clause text"], content_hash="same")
    store.apply([original])
    store.update_meta("doc001", {"acl": ["legal"]})
    copy = document(2, [], content_hash="same")
    copy.record.status, copy.record.duplicate_of = "duplicate", "doc001"
    copy.record.metadata = {"acl": ["hr"]}
    store.apply([copy])
    store.delete(["doc001"])
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    assert uids(store, store.dense_search(query, 10, {"acl": "hr"})) == ["doc001-1-0"]
    assert store.dense_search(query, 10, {"acl": "legal"}) == []
    assert store.sparse_search("warranty", 10, {"acl": "legal"}) == []


# --- filters --------------------------------------------------------------------------------------

EXTRA_FILTERS: list[dict[str, Any]] = [
    {"author": 'O"Brien \\ x'},
    {"author": {"$in": ['O"Brien \\ x', "Zoë"]}},
    {"section_title": {"$contains": "%"}},
    {"section_title": {"$contains": "_"}},
    {"$not": {"section_title": {"$contains": "Scope"}}},
    {"source": {"$contains": "doc01"}},
    {"source": {"$gte": "file:///corpus/doc010.md"}},
    {"document_id": {"$in": ["doc003", "doc017"]}},
    {"chunk_index": {"$gte": 1}},
    {"language": "zh"},
    {"tags": {"$in": ["legal", "y"]}, "is_ocr": False},
    {"$or": [{"tags": {"$in": ["legal"]}}, {"tags": {"$exists": False}}]},
    {"heading_path": {"$nin": ["Scope"]}, "word_count": {"$gte": 99}},
    {"is_ocr": 1},
]
FILTERS = [f for f in PARITY_FILTERS if f] + EXTRA_FILTERS


def _valid(filter: dict[str, Any]) -> bool:
    try:
        validate_filter(filter)
    except FilterError:
        return False
    return True


CHUNK_FILTERS = [f for f in FILTERS if _valid(f)]


def test_the_filter_cases_are_mostly_valid_and_selective() -> None:
    updates = corpus()
    total = sum(len(u.chunks) for u in updates)
    assert len(CHUNK_FILTERS) >= 60
    partial = [f for f in CHUNK_FILTERS if 0 < len(expected(updates, f)) < total]
    assert len(partial) >= len(CHUNK_FILTERS) * 0.75


@pytest.mark.parametrize("filter", CHUNK_FILTERS, ids=[json.dumps(f, ensure_ascii=False) for f in CHUNK_FILTERS])
def test_filters_select_exactly_what_matches_selects(filled: tuple[ChunkStore, list[DocumentUpdate]],
                                                     filter: dict[str, Any]) -> None:
    store, updates = filled
    want = expected(updates, filter)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    assert set(uids(store, store.dense_search(query, 1000, filter))) == want
    assert set(uids(store, store.sparse_search(COMMON, 1000, filter))) == want
    assert set(uids(store, store.sparse_search(COMMON, 1000, json.dumps(filter)))) == want


@pytest.mark.parametrize("filter", INJECTION_VALUES, ids=[json.dumps(f) for f in INJECTION_VALUES])
def test_injection_attempts_are_values_that_match_nothing(filled: tuple[ChunkStore, list[DocumentUpdate]],
                                                          filter: dict[str, Any]) -> None:
    store, updates = filled
    query = np.ones(DIM, dtype=np.float32)
    assert store.dense_search(query, 100, filter) == [] == store.sparse_search(COMMON, 100, filter)
    assert store.count() == sum(len(u.chunks) for u in updates)


def test_a_malformed_filter_is_refused_before_the_engine_sees_it(filled: tuple[ChunkStore, Any]) -> None:
    store, _ = filled
    with pytest.raises(FilterError, match="did you mean '\\$gte'"):
        store.dense_search(np.ones(DIM, dtype=np.float32), 5, {"page_number": {"$gtee": 3}})
    with pytest.raises(FilterError, match="unknown field"):
        store.sparse_search(COMMON, 5, {"source_type = 1 OR 1": "x"})


# --- rankings -------------------------------------------------------------------------------------


def test_dense_search_ranks_by_cosine(filled: tuple[ChunkStore, list[DocumentUpdate]]) -> None:
    store, updates = filled
    chunks = [c.id for u in updates for c in u.chunks]
    matrix = np.concatenate([u.vectors for u in updates])
    for seed in range(3):
        query = unit(np.random.default_rng(100 + seed), 1)[0]
        ranking = store.dense_search(query, 10)
        scores = matrix @ query
        best = [chunks[i] for i in np.argsort(-scores, kind="stable")[:10]]
        assert uids(store, ranking) == best
        np.testing.assert_allclose([s for _, s in ranking], np.sort(scores)[::-1][:10], atol=1e-5)


def test_sparse_search_is_bm25_over_ragtune_tokens(filled: tuple[ChunkStore, list[DocumentUpdate]]) -> None:
    store, updates = filled
    chunks = [c.id for u in updates for c in u.chunks]
    defaults = Settings()
    reference = BM25Index(k1=defaults.bm25_k1, b=defaults.bm25_b)
    reference.add(list(range(len(chunks))), [t for u in updates for t in u.chunk_tokens()])
    for query in ("river mountain", "refund warranty clause", "年假制度", "alpha alpha omega"):
        ids, scores = reference.search(tokenize(query), 10)
        ranking = store.sparse_search(query, 10)
        assert uids(store, ranking) == [chunks[i] for i in ids.tolist()]
        np.testing.assert_allclose([s for _, s in ranking], scores, rtol=1e-4)
    assert store.sparse_search("the of and", 10) == [] == store.sparse_search("unseenword", 10)


def test_a_store_reopened_with_other_bm25_parameters_ranks_with_them(
    make_store: StoreMaker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A KB made with the textbook k1 / b, opened after the defaults changed: its sparse index is rebuilt once, and
    # the rebuild says what it does and how far it got (every report due at once here).
    updates = corpus(12)
    tokens = [t for u in updates for t in u.chunk_tokens()]
    old = make_store("kb-bm25", bm25_k1=1.5, bm25_b=0.9)
    old.apply(updates)
    chunks = [c.id for u in updates for c in u.chunks]
    old.save_indexes()
    old.close()
    monkeypatch.setattr(CatchUpLog, "every", 0.0)
    with caplog.at_level(logging.WARNING, logger="ragtune.store"):
        reopened = make_store("kb-bm25", create=False, bm25_k1=0.9, bm25_b=0.4)
        reopened.sparse_search("river", 1)
    said = [r.getMessage() for r in caplog.records]
    assert any(f"{len(chunks)} chunks" in m and m.startswith("rebuilding the") for m in said), said
    assert any(m.startswith("rebuilt the") for m in said), said
    reference = BM25Index(k1=0.9, b=0.4)
    reference.add(list(range(len(chunks))), tokens)
    for query in ("river mountain", f"alpha {COMMON}"):
        ids, scores = reference.search(tokenize(query), 10)
        ranking = reopened.sparse_search(query, 10)
        assert uids(reopened, ranking) == [chunks[i] for i in ids.tolist()]
        np.testing.assert_allclose([s for _, s in ranking], scores, rtol=1e-4)
    assert reopened.verify()["ok"]


class _FixedEmbedder:
    """Query vectors from a seeded generator: the same query gets the same vector in every backend."""

    name = EMBEDDER
    dim = DIM

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([unit(np.random.default_rng(sum(map(ord, t))), 1)[0] for t in texts])


def test_hybrid_ranking_equals_the_embedded_stores(filled: tuple[ChunkStore, list[DocumentUpdate]],
                                                    request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store, updates = filled
    # The reference is always the embedded (local) store, whichever backend filled the store under test.
    make_reference, opened = store_maker("local", request, tmp_path)
    request.addfinalizer(lambda: [each.close() for each in opened])
    reference = make_reference()
    reference.apply(corpus())
    for query in ("river mountain common", "refund warranty", "年假 common", "tenant landlord deposit"):
        for filter in (None, {"source_type": {"$in": ["pdf", "md"]}}):
            embedder: Any = _FixedEmbedder()
            got = HybridRetriever(store, embedder, candidates=30).search(query, 10, filter=filter)
            want = HybridRetriever(reference, embedder, candidates=30).search(query, 10, filter=filter)
            assert [h.chunk_id for h in got.hits] == [h.chunk_id for h in want.hits]
            np.testing.assert_allclose([h.score for h in got.hits], [h.score for h in want.hits], rtol=1e-6)


# --- maintenance ----------------------------------------------------------------------------------


def test_reembed_switches_every_vector_and_resumes_after_a_failure(make_store: StoreMaker) -> None:
    store = make_store()
    updates = corpus(10)
    store.apply(updates)
    new_dim = 6
    calls = {"n": 0}

    def encode(texts: list[str]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the new model crashed")
        return np.stack([unit(np.random.default_rng(sum(map(ord, t))), 1, new_dim)[0] for t in texts])

    with pytest.raises(RuntimeError):
        store.reembed(encode, name="new-model", dim=new_dim, batch_size=4)
    pending = store.reembed_pending()
    assert pending is not None and pending["embedder"] == "new-model" and pending["vectors_done"] == 4
    query = np.ones(DIM, dtype=np.float32)
    assert len(store.dense_search(query, 100)) == store.count()  # still searchable with the old vectors
    report = store.reembed(encode, name="new-model", dim=new_dim, batch_size=4)
    assert report["resumed"] and report["reused_vectors"] == 4 and report["chunks"] == store.count()
    assert (store.embedder_name, store.dim, store.reembed_pending()) == ("new-model", new_dim, None)
    texts = {c.id: c.text for u in updates for c in u.chunks}
    target = next(iter(texts))
    query = encode([texts[target]])[0]
    assert uids(store, store.dense_search(query, 1)) == [target]
    assert store.verify()["ok"]


def test_a_rebuild_counts_the_chunks_it_reads(
    make_store: StoreMaker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Deleted chunks leave gaps in the ids: the rebuild announces the chunks there are, not the span of their ids.
    updates = corpus(12)
    old = make_store("kb-count", bm25_k1=1.5, bm25_b=0.9)
    old.apply(updates)
    assert old.delete([updates[0].record.id]) == len(updates[0].chunks)
    remaining = sum(len(u.chunks) for u in updates[1:])
    old.save_indexes()
    old.close()
    monkeypatch.setattr(CatchUpLog, "every", 0.0)
    with caplog.at_level(logging.WARNING, logger="ragtune.store"):
        reopened = make_store("kb-count", create=False, bm25_k1=0.9, bm25_b=0.4)
        assert reopened.sparse_search("river", 1)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rebuilding the")]
    announced = [m for m in said if "from the database:" in m]
    assert announced and all(m.endswith(f": {remaining} chunks") for m in announced), said


def test_verify_is_clean_and_a_rebuild_keeps_every_result(make_store: StoreMaker) -> None:
    store = make_store()
    store.apply(corpus(10))
    before = (store.sparse_search("river mountain", 10), store.dense_search(np.ones(DIM, dtype=np.float32), 10))
    report = store.verify()
    assert report["ok"] and report["problems"] == [] and report["documents"] == 10
    store.rebuild_indexes()
    after = (store.sparse_search("river mountain", 10), store.dense_search(np.ones(DIM, dtype=np.float32), 10))
    assert [uids(store, r) for r in after] == [uids(store, r) for r in before]
    assert store.verify()["ok"]
