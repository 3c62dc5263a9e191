"""The knowledge base end to end on real SQLite and the real bundled embedder."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from ragtune.errors import EmbedderMismatchError, FilterError, StoreError
from ragtune.ingest import document_id, file_uri
from ragtune.kb import KnowledgeBase

pytestmark = pytest.mark.integration


@pytest.fixture()
def kb(tmp_path: Path, embedder):
    base = KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder)
    yield base
    base.close()


def _chunk_rows(kb: KnowledgeBase) -> list[tuple]:
    conn = sqlite3.connect(kb.path / "ragtune.db")
    try:
        return conn.execute("SELECT uid, document_id, text FROM chunks ORDER BY uid").fetchall()
    finally:
        conn.close()


def test_ingest_then_search_finds_the_right_document(kb, docs_dir):
    report = kb.ingest(docs_dir)
    assert report.ok and len(report.added) == 5 and report.chunks > 5
    stats = kb.stats()
    assert stats["documents"] == 5 and stats["failed"] == 0 and stats["embedder"] == "all-MiniLM-L6-v2"
    for mode in ("hybrid", "dense", "sparse"):
        hits = kb.search("how do I rotate API keys", k=3, mode=mode)
        assert hits[0].source.endswith("security.md"), mode
        assert "Key rotation" in hits[0].meta.heading_path
        assert hits[0].document_id == document_id(file_uri(docs_dir / "handbook" / "security.md"))


def test_reingest_is_a_no_op_with_the_same_ids(kb, docs_dir):
    kb.ingest(docs_dir)
    before = _chunk_rows(kb)
    report = kb.ingest(docs_dir)
    assert len(report.unchanged) == 5 and not report.added and not report.updated and report.chunks == 0
    assert _chunk_rows(kb) == before
    assert kb.verify()["ok"]


def test_changed_file_replaces_its_chunks_without_duplicates(kb, docs_dir):
    kb.ingest(docs_dir)
    target = docs_dir / "handbook" / "refunds.md"
    doc_id = document_id(file_uri(target))
    target.write_text(target.read_text().replace("45 days", "60 days"))
    report = kb.ingest(docs_dir)
    assert report.updated == [file_uri(target)] and len(report.unchanged) == 4
    rows = [r for r in _chunk_rows(kb) if r[1] == doc_id]
    assert len(rows) == len({r[2] for r in rows})  # no chunk stored twice
    assert all(r[0].startswith(f"{doc_id}-2-") for r in rows)  # only the new version remains
    texts = " ".join(r[2] for r in rows)
    assert "60 days" in texts and "45 days" not in texts
    hits = kb.search("enterprise refund window", k=5, mode="sparse")
    assert not any("45 days" in h.text for h in hits)
    assert kb.verify()["ok"]


def test_sync_removes_documents_whose_files_are_gone(kb, docs_dir):
    kb.ingest(docs_dir)
    (docs_dir / "handbook" / "travel.txt").unlink()
    assert kb.ingest(docs_dir).deleted == []  # without --sync nothing is deleted
    assert kb.stats()["documents"] == 5
    report = kb.ingest(docs_dir, sync=True)
    assert report.deleted == [file_uri(docs_dir / "handbook" / "travel.txt")]
    assert kb.stats()["documents"] == 4
    assert not any("Voyager" in h.text for h in kb.search("Voyager flights", k=5, mode="sparse"))
    assert kb.verify()["ok"]


def test_a_named_file_that_is_gone_fails_without_sync_and_is_deleted_with_it(kb, docs_dir):
    target = docs_dir / "handbook" / "travel.txt"
    kb.ingest(target)
    target.unlink()
    report = kb.ingest(target)
    assert report.failed == [(file_uri(target), "no such file or directory — check the path")]
    assert kb.stats()["documents"] == 1
    report = kb.ingest(target, sync=True)
    assert report.ok and report.deleted == [file_uri(target)] and kb.stats()["documents"] == 0


def test_sync_only_touches_the_given_roots(kb, docs_dir, tmp_path):
    other = tmp_path / "other.md"
    other.write_text("# Other\n\nThe canteen opens at noon.")
    kb.ingest([docs_dir, other])
    report = kb.ingest(docs_dir, sync=True)
    assert report.deleted == [] and kb.stats()["documents"] == 6


def test_identical_files_are_stored_once_and_survive_deleting_the_original(kb, docs_dir):
    original = docs_dir / "handbook" / "travel.txt"
    copy = docs_dir / "copy-of-travel.txt"
    shutil.copy(original, copy)
    report = kb.ingest(docs_dir)
    assert len(report.duplicates) == 1
    stats = kb.stats()
    assert stats["documents"] == 5 and stats["duplicates"] == 1
    voyager = [h for h in kb.search("Voyager portal flights", k=10, mode="sparse") if "Voyager" in h.text]
    assert len(voyager) == 1  # the content is indexed once
    kept = voyager[0].source
    Path(kept).unlink()
    report = kb.ingest(docs_dir, sync=True)
    assert report.deleted == [kept]
    hits = [h for h in kb.search("Voyager portal flights", k=10, mode="sparse") if "Voyager" in h.text]
    assert len(hits) == 1 and hits[0].source != kept  # the surviving copy inherited the chunks
    assert kb.stats()["duplicates"] == 0 and kb.verify()["ok"]


def test_corrupt_and_unknown_files_fail_alone_and_touch_nothing_stored(kb, docs_dir):
    kb.ingest(docs_dir)
    before = _chunk_rows(kb)
    bad_pdf = docs_dir / "broken.pdf"
    bad_pdf.write_bytes(b"%PDF-1.7 this is not really a pdf")
    unknown = docs_dir / "notes.xyz"
    unknown.write_text("hello")
    report = kb.ingest([docs_dir, unknown])
    assert not report.ok
    failed = dict(report.failed)
    assert set(failed) == {file_uri(bad_pdf), file_uri(unknown)}
    assert "xyz" in failed[file_uri(unknown)]
    assert _chunk_rows(kb) == before
    docs = {d.uri: d for d in kb.documents()}
    assert docs[file_uri(bad_pdf)].status == "failed" and docs[file_uri(bad_pdf)].error
    assert kb.stats()["failed"] == 2 and kb.stats()["documents"] == 5


def test_a_file_that_breaks_keeps_its_last_good_version(kb, docs_dir):
    target = docs_dir / "handbook" / "travel.pdf"
    import pymupdf

    pdf = pymupdf.open()
    pdf.new_page().insert_text((72, 72), "Hotel costs are reimbursed up to 180 EUR per night.")
    pdf.save(target)
    kb.ingest(docs_dir)
    target.write_bytes(target.read_bytes()[:200])  # truncated: now corrupt
    report = kb.ingest(docs_dir)
    assert [s for s, _ in report.failed] == [file_uri(target)]
    record = next(d for d in kb.documents() if d.uri == file_uri(target))
    assert record.status == "failed" and record.chunk_count == 1
    assert any(h.source == file_uri(target) for h in kb.search("hotel reimbursed per night", k=5, mode="sparse"))


def test_chinese_document_is_found_by_a_chinese_query(kb, docs_dir):
    kb.ingest(docs_dir)
    for mode in ("sparse", "hybrid"):
        hits = kb.search("病假需要医院证明吗", k=3, mode=mode)
        assert hits[0].source.endswith("休假制度.md"), mode
        assert "病假" in hits[0].text


def test_filters_restrict_results_and_reject_bad_input(kb, docs_dir):
    kb.ingest(docs_dir)
    hits = kb.search("policy", k=10, mode="hybrid", filter={"source_type": "txt"})
    assert hits and all(h.meta.source_type == "txt" for h in hits)
    hits = kb.search("policy", k=10, mode="dense", filter='{"source_type": {"$in": ["md", "html"]}}')
    assert hits and {h.meta.source_type for h in hits} <= {"md", "html"}
    assert kb.search("policy", k=10, filter={"source_type": "x' OR 1=1 --"}) == []
    with pytest.raises(FilterError, match="source_type"):
        kb.search("policy", filter={"sourcetype": "md"})


def test_weights_change_the_fused_ranking(tmp_path, embedder, docs_dir):
    path = tmp_path / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as base:
        base.ingest(docs_dir)
    query = "reimbursement limits for hotels abroad"
    with KnowledgeBase.open(path, embedder=embedder, dense_weight=1.0, sparse_weight=0.0) as base:
        dense_only = [h.chunk_id for h in base.search(query, k=5)]
        assert dense_only == [h.chunk_id for h in base.search(query, k=5, mode="dense")]
    with KnowledgeBase.open(path, embedder=embedder, dense_weight=0.0, sparse_weight=1.0) as base:
        sparse_only = [h.chunk_id for h in base.search(query, k=5)]
        assert sparse_only == [h.chunk_id for h in base.search(query, k=5, mode="sparse")][: len(sparse_only)]


def test_reopening_uses_persisted_indexes_and_rebuilds_lost_ones(tmp_path, embedder, docs_dir):
    path = tmp_path / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as base:
        base.ingest(docs_dir)
        expected = [h.chunk_id for h in base.search("two-factor authentication", k=5)]
    assert (path / "index" / "dense").is_dir() and (path / "index" / "sparse").is_dir()
    with KnowledgeBase.open(path, embedder=embedder) as base:
        assert [h.chunk_id for h in base.search("two-factor authentication", k=5)] == expected
    shutil.rmtree(path / "index")
    with KnowledgeBase.open(path, embedder=embedder) as base:
        assert [h.chunk_id for h in base.search("two-factor authentication", k=5)] == expected
        assert base.verify()["ok"]


def test_a_second_handle_sees_writes_made_through_another(tmp_path, embedder, docs_dir):
    path = tmp_path / "kb"
    writer = KnowledgeBase.open(path, create=True, embedder=embedder)
    reader = KnowledgeBase.open(path, embedder=embedder)
    try:
        assert reader.search("Voyager", k=3, mode="sparse") == []
        writer.ingest(docs_dir)
        assert reader.search("Voyager portal", k=3, mode="sparse")[0].source.endswith("travel.txt")
        assert reader.search("Voyager portal", k=3, mode="dense")[0].source.endswith("travel.txt")
        writer.delete(document_id(file_uri(docs_dir / "handbook" / "travel.txt")))
        assert not any(h.source.endswith("travel.txt") for h in reader.search("Voyager portal", k=3))
    finally:
        writer.close()
        reader.close()


def test_opening_with_another_embedder_is_a_clear_error(tmp_path, embedder, docs_dir):
    path = tmp_path / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as base:
        base.ingest(docs_dir)
    with pytest.raises(EmbedderMismatchError, match="all-MiniLM-L6-v2.*multilingual-e5-small"):
        KnowledgeBase.open(path, embedder="multilingual-e5-small")
    with KnowledgeBase.open(path) as base:  # no embedder named: the recorded one is used
        assert base.settings.embedder == "all-MiniLM-L6-v2"
        assert base.stats()["documents"] == 5


def test_opening_a_missing_kb_says_how_to_create_it(tmp_path):
    with pytest.raises(StoreError, match="ragtune init"):
        KnowledgeBase.open(tmp_path / "nope")


def test_delete_removes_a_document(kb, docs_dir):
    kb.ingest(docs_dir)
    doc = next(d for d in kb.documents() if d.uri.endswith("security.md"))
    assert kb.delete(doc.id) and not kb.delete(doc.id)
    assert not any(h.document_id == doc.id for h in kb.search("rotate API keys", k=10))
    assert kb.verify()["ok"]


def test_verify_detects_and_repairs_a_stale_index(kb, docs_dir):
    kb.ingest(docs_dir)
    kb.store._dense.remove([1, 2])  # simulate an index that lost entries
    report = kb.verify()
    assert not report["ok"] and any("dense index" in p for p in report["problems"])
    assert kb.verify(repair=True)["ok"]


def test_multilingual_embedder_finds_chinese_sections_densely(tmp_path, docs_dir):
    with KnowledgeBase.open(tmp_path / "kb", create=True, embedder="multilingual-e5-small") as base:
        base.ingest(docs_dir)
        assert base.stats()["embedder"] == "multilingual-e5-small"
        for query, section in (("年假有几天", "年假"), ("请病假需要什么证明", "病假")):
            hit = base.search(query, k=1, mode="dense")[0]
            assert hit.source.endswith("休假制度.md") and hit.meta.section_title == section


class _WideEmbedder:
    """Claims the KB's embedder name but produces 768-d vectors, like a swapped checkpoint."""

    name = "all-MiniLM-L6-v2"
    dim = 768


def test_opening_with_an_embedder_of_another_dimension_is_a_clear_error(tmp_path, embedder, docs_dir):
    path = tmp_path / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as base:
        base.ingest(docs_dir / "handbook" / "travel.txt")
    with pytest.raises(EmbedderMismatchError, match="768 dimensions.*384"):
        KnowledgeBase.open(path, embedder=_WideEmbedder())


def test_a_filter_sees_chunks_handed_to_a_duplicate(kb, docs_dir):
    original = docs_dir / "handbook" / "travel.txt"
    copy = docs_dir / "copy-of-travel.txt"
    shutil.copy(original, copy)
    kb.ingest(docs_dir)
    kept = next(d for d in kb.documents() if d.status == "ok" and d.uri.endswith("travel.txt"))
    heir = next(d for d in kb.documents() if d.status == "duplicate")
    only_heir = {"document_id": heir.id}
    assert kb.search("Voyager portal", k=3, mode="sparse", filter=only_heir) == []
    assert kb.delete(kept.id)  # the chunks move to the duplicate; no chunk is added or removed
    hits = kb.search("Voyager portal", k=3, mode="sparse", filter=only_heir)
    assert hits and hits[0].document_id == heir.id
