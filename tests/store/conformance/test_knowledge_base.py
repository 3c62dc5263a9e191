"""A knowledge base on Postgres and on Milvus, end to end with the real embedder: the same commands as the embedded
store (ingest, re-ingest, change, sync, duplicates, filters, reopen) give the same results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from chat_logs import QUESTION, write_logs
from sigkill import committed_rows, kill_once_committed, widget_corpus

from ragtune.errors import ConfigError
from ragtune.ingest import document_id, file_uri
from ragtune.kb import KnowledgeBase
from ragtune.store.factory import POINTER_FILE

pytestmark = pytest.mark.integration

QUERIES = ["how do I rotate API keys", "refund window for enterprise plans", "年假有多少天", "hotel limit per night"]


@pytest.fixture(params=["postgres", "milvus"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_the_same_commands_give_the_same_results_as_the_embedded_store(tmp_path: Path, embedder, docs_dir: Path,
                                                                        store_url: str) -> None:
    with KnowledgeBase.open(tmp_path / "local", create=True, embedder=embedder) as local:
        assert local.ingest(docs_dir).ok
        reference = {(q, mode): [h.chunk_id for h in local.search(q, k=5, mode=mode)]
                     for q in QUERIES for mode in ("hybrid", "dense", "sparse")}
        reference_stats = local.stats()
    kb_dir = tmp_path / "shared"
    with KnowledgeBase.open(kb_dir, create=True, embedder=embedder, store=store_url) as kb:
        report = kb.ingest(docs_dir)
        assert report.ok and len(report.added) == 5
        assert (kb.stats()["documents"], kb.stats()["chunks"]) == (5, reference_stats["chunks"])
        for (query, mode), want in reference.items():
            assert [h.chunk_id for h in kb.search(query, k=5, mode=mode)] == want, (query, mode)
        assert all(h.meta.source_type == "md" for h in kb.search("policy", k=10, filter={"source_type": "md"}))
        again = kb.ingest(docs_dir)
        assert len(again.unchanged) == 5 and again.chunks == 0
    # The folder remembers where the KB lives: reopening needs no store setting.
    assert json.loads((kb_dir / POINTER_FILE).read_text())["store"] == store_url
    with pytest.raises(ConfigError, match="lives in"):
        KnowledgeBase.open(kb_dir, embedder=embedder, store="local")
    with KnowledgeBase.open(kb_dir, embedder=embedder) as kb:
        target = docs_dir / "handbook" / "refunds.md"
        target.write_text(target.read_text().replace("45 days", "60 days"))
        (docs_dir / "handbook" / "travel.txt").unlink()
        shutil.copy(docs_dir / "handbook" / "security.md", docs_dir / "security-copy.md")
        report = kb.ingest(docs_dir, sync=True)
        assert report.updated == [file_uri(target)] and len(report.deleted) == 1 and len(report.duplicates) == 1
        assert any("60 days" in h.text for h in kb.search("refund window days", k=5))
        original = document_id(file_uri(docs_dir / "handbook" / "security.md"))
        assert kb.delete(original)
        copy = document_id(file_uri(docs_dir / "security-copy.md"))
        hits = kb.search("rotate API keys", k=3, filter={"document_id": copy})
        assert hits and all(h.document_id == copy for h in hits)
        assert kb.verify()["ok"]


def test_access_groups_audit_and_graph_on_a_shared_store(tmp_path: Path, embedder, docs_dir: Path,
                                                         store_url: str) -> None:
    kb_dir = tmp_path / "shared"
    refunds = docs_dir / "handbook" / "refunds.md"
    with KnowledgeBase.open(kb_dir, create=True, embedder=embedder, store=store_url) as kb:
        assert kb.ingest(docs_dir, acl="hr").ok
        question = "refund window for enterprise plans"
        assert kb.search(question, k=5, groups="sales", actor="test") == []
        assert len(kb.search(question, k=5, groups="hr", actor="test")) == 5
        assert kb.set_acl(document_id(file_uri(refunds)), "sales", actor="test")
        for mode in ("sparse", "dense"):  # Milvus filters the dense side on its own copy of the groups
            shown = kb.search(question, k=5, mode=mode, groups="sales", actor="test")
            assert {h.source for h in shown} == {file_uri(refunds)}, mode
        # Unchanged files ingested with other groups are regrouped in place, without re-embedding.
        again = kb.ingest(docs_dir, acl="hr,sales")
        assert len(again.unchanged) == 5 and len(kb.search("annual leave policy", k=5, groups="sales")) == 5
        entries = kb.audit_log().entries(actor="test")
        assert [e.action for e in entries] == ["search", "search", "acl", "search", "search"]
        assert kb.audit_log().verify()["ok"]
    # A Postgres KB keeps its audit log in a file of its own (no ragtune.db to mistake it for a local KB); a
    # Milvus KB in its catalog.
    postgres = store_url.startswith("postgresql")
    assert (kb_dir / "audit.db").exists() == postgres and (kb_dir / "ragtune.db").exists() != postgres
    if postgres:
        with pytest.raises(ConfigError, match="graph retrieval needs the local store"):
            KnowledgeBase.open(kb_dir, embedder=embedder, graph=True)
        with KnowledgeBase.open(kb_dir, embedder=embedder) as kb, pytest.raises(ConfigError, match="local store"):
            kb.build_graph()
    else:  # the catalog is the embedded store's: the graph lives beside it
        with KnowledgeBase.open(kb_dir, embedder=embedder, graph=True) as kb:
            assert kb.build_graph()["chunks"] > 0 and kb.graph is not None
            assert kb.search("refund window", k=3, mode="graph")


def _committed(kb_dir: Path) -> int:
    """Documents stored so far, read without writing anything (opening a KB may save its caught-up indexes)."""
    db = kb_dir / "ragtune.db"
    if db.exists():  # Milvus keeps its catalog in the folder
        return committed_rows(db, "documents")
    with KnowledgeBase.open(kb_dir) as probe:
        return int(probe.stats()["documents"])


INGEST = """
import sys
from ragtune.kb import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1], create=True, store=sys.argv[3])
kb.ingest(sys.argv[2])
kb.close()
"""


@pytest.mark.slow
def test_dated_questions_and_conversation_threads_on_a_shared_store(tmp_path: Path, embedder,
                                                                    store_url: str) -> None:
    """Dates read at ingestion, created_at ranges and the search's thread step work on Postgres and Milvus as on
    the embedded store: the same hits, reached the same way."""
    docs = write_logs(tmp_path)
    questions = [QUESTION, "Who did Alice meet on 20260122?"]
    with KnowledgeBase.open(tmp_path / "local", create=True, embedder=embedder) as local:
        assert local.ingest(docs).ok
        want = {q: [(Path(h.source).name, h.path, h.meta.created_at) for h in local.search(q, k=3)] for q in questions}
    assert any(path and path[-1].startswith("thread:") for _, path, _ in want[QUESTION]), want
    with KnowledgeBase.open(tmp_path / "shared", create=True, embedder=embedder, store=store_url) as kb:
        assert kb.ingest(docs).ok
        for question in questions:
            got = [(Path(h.source).name, h.path, h.meta.created_at) for h in kb.search(question, k=3)]
            assert got == want[question], question


def test_sigkill_mid_ingest_loses_no_committed_document(tmp_path: Path, store_url: str) -> None:
    corpus = tmp_path / "corpus"
    n = 200  # several flushes of 16 batches of 2 chunks: the kill lands between two of them
    widget_corpus(corpus, n)
    kb_dir = tmp_path / "kb"
    kill_once_committed(INGEST, [str(kb_dir), str(corpus), store_url],
                        lambda: (kb_dir / POINTER_FILE).exists() and _committed(kb_dir) >= 2, embed_batch_size=2,
                        poll=0.2)
    with KnowledgeBase.open(kb_dir) as kb:
        committed = kb.documents()
        assert 0 < len(committed) < n
        report = kb.verify()
        assert report["ok"], report["problems"]
        resumed = kb.ingest(corpus)
        assert resumed.ok and len(resumed.unchanged) == len(committed) and len(resumed.added) == n - len(committed)
        assert kb.stats()["documents"] == n and kb.verify()["ok"]
        hits = kb.search("widget number 7 property", k=3, mode="sparse")
        assert hits[0].source.endswith("doc0007.md")
