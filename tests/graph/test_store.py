"""The graph in the KB's SQLite: in step with every write, incremental, verified, resumable, repairable."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.graph import KnowledgeGraph, graph_enabled
from ragtune.ingest import document_id, file_uri
from ragtune.kb import KnowledgeBase

pytestmark = pytest.mark.integration

DOCS = {
    "a.md": "Project Lumen is led by Ada Park. Ada Park joined from Northwind Labs.",
    "b.md": "The Lumen team works from the Harbour office in Porto.",
    "c.md": "Kestrel Assurance audits Brightwater Metals every spring.",
}


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text + "\n")
    return folder


@pytest.fixture()
def kb(tmp_path: Path, embedder):
    base = KnowledgeBase.open(tmp_path / "kb", create=True, embedder=embedder, graph=True)
    yield base
    base.close()


def _mentions(kb: KnowledgeBase, path: Path) -> set[tuple[int, int]]:
    """(chunk id, entity id) mention edges of one document."""
    with kb.store.read() as conn:
        return set(conn.execute(
            "SELECT m.chunk_id, m.entity_id FROM graph_mentions m JOIN chunks c ON c.id = m.chunk_id"
            " WHERE c.document_id = ?", (document_id(file_uri(path)),)).fetchall())


def _entities(kb: KnowledgeBase) -> dict[str, tuple[int, int]]:
    with kb.store.read() as conn:
        return {key: (eid, n) for eid, key, n in conn.execute("SELECT id, key, chunks FROM graph_entities")}


def _log_graph_writes(kb: KnowledgeBase) -> None:
    """Record every row the graph tables gain, change or lose (temporary triggers on the store's connection)."""
    with kb.store.transaction() as conn:
        conn.execute("CREATE TEMP TABLE graph_log (tbl TEXT, entity_id INTEGER, chunk_id INTEGER)")
        for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            conn.execute(f"CREATE TEMP TRIGGER log_e_{op} AFTER {op} ON graph_entities BEGIN"
                         f" INSERT INTO graph_log VALUES ('e', {row}.id, NULL); END")
            conn.execute(f"CREATE TEMP TRIGGER log_m_{op} AFTER {op} ON graph_mentions BEGIN"
                         f" INSERT INTO graph_log VALUES ('m', {row}.entity_id, {row}.chunk_id); END")


def _logged(kb: KnowledgeBase) -> tuple[set[int], set[int]]:
    with kb.store.read() as conn:
        rows = conn.execute("SELECT entity_id, chunk_id FROM graph_log").fetchall()
    return {e for e, _ in rows}, {c for _, c in rows if c is not None}


def test_ingest_keeps_the_graph_in_step(kb, docs):
    kb.ingest(docs)
    report = kb.verify()
    assert report["ok"], report["problems"]
    stats = kb.graph.stats()
    assert stats["chunks_in_graph"] == stats["chunks"] == 3 and stats["chunks_missing"] == 0
    lumen = kb.graph.neighbors("Project Lumen")
    assert lumen["entity"]["name"] in ("Lumen", "Project Lumen") and lumen["entity"]["chunks"] == 2
    assert {"adapark", "porto"} <= {n["key"] for n in lumen["neighbors"]}
    assert sorted(Path(s).name for s in lumen["sources"]) == ["a.md", "b.md"]
    top = kb.graph.entities(top=3)
    assert top[0]["key"] in ("lumen", "adapark") and top[0]["chunks"] == 2


def test_changing_a_document_touches_only_its_entities_and_edges(kb, docs):
    kb.ingest(docs)
    before_b, before_a = _mentions(kb, docs / "b.md"), _mentions(kb, docs / "a.md")
    before = _entities(kb)
    _log_graph_writes(kb)
    (docs / "b.md").write_text("The Lumen team moved to the Riverside office in Lyon.\n")
    assert kb.ingest(docs).updated == [file_uri(docs / "b.md")]
    after_b = _mentions(kb, docs / "b.md")
    entities, chunks = _logged(kb)
    assert entities <= {e for _, e in before_b | after_b}  # only b's old and new entities were written
    assert chunks <= {c for c, _ in before_b | after_b}  # only b's old and new chunks' edges
    assert _mentions(kb, docs / "a.md") == before_a
    after = _entities(kb)
    assert "porto" not in after and "lyon" in after  # Porto was b's alone; Lyon is new
    assert after["lumen"] == before["lumen"]  # same entity, same count: one chunk left, one came
    untouched = {k: v for k, v in before.items() if v[0] not in {e for _, e in before_b}}
    assert all(after[k] == v for k, v in untouched.items())
    assert kb.verify()["ok"]


def test_deleting_a_document_removes_only_its_entities_and_edges(kb, docs):
    kb.ingest(docs)
    b_edges = _mentions(kb, docs / "b.md")
    _log_graph_writes(kb)
    assert kb.delete(document_id(file_uri(docs / "b.md")))
    entities, chunks = _logged(kb)
    assert entities <= {e for _, e in b_edges} and chunks <= {c for c, _ in b_edges}
    after = _entities(kb)
    assert "porto" not in after and after["lumen"][1] == 1
    assert kb.verify()["ok"]


def test_a_duplicate_inherits_the_chunks_and_their_graph(kb, docs):
    shutil.copy(docs / "c.md", docs / "c-copy.md")
    report = kb.ingest(docs)
    assert len(report.duplicates) == 1
    before = _entities(kb)
    kb.delete(document_id(file_uri(docs / "c.md")))
    assert _entities(kb) == before  # chunks kept their ids under the copy: nothing to change
    assert [Path(s).name for s in kb.graph.neighbors("Kestrel Assurance")["sources"]] == ["c-copy.md"]
    assert kb.verify()["ok"]


def test_verify_finds_a_graph_out_of_step_and_repair_fixes_it(kb, docs):
    kb.ingest(docs)
    with kb.store.transaction() as conn:
        conn.execute("DELETE FROM graph_chunks WHERE chunk_id = (SELECT min(chunk_id) FROM graph_chunks)")
        conn.execute("UPDATE graph_entities SET chunks = chunks + 5 WHERE key = 'porto'")
    report = kb.verify()
    assert not report["ok"]
    assert any("not in the graph" in p for p in report["problems"])
    assert any("wrong chunk counts" in p for p in report["problems"])
    repaired = kb.verify(repair=True)
    assert repaired["ok"] and repaired["repaired"], repaired["problems"]


def test_graph_build_on_an_existing_kb_resumes_and_matches_ingest(tmp_path, embedder, docs):
    for i in range(12):
        (docs / f"team{i}.md").write_text(f"Engineer Person{i} Smith works with Team{i} at Office{i % 3} in Porto.\n")
    with KnowledgeBase.open(tmp_path / "kb-graph", create=True, embedder=embedder, graph=True) as reference:
        reference.ingest(docs)
        expected = {k: n for k, (_, n) in _entities(reference).items()}
    with KnowledgeBase.open(tmp_path / "kb-plain", create=True, embedder=embedder) as kb:
        kb.ingest(docs)
        assert kb.graph is None and not graph_enabled(kb.store)
        graph = KnowledgeGraph(kb.store)
        seen: list[tuple[int, int]] = []

        def stop_after_two_batches(done: int, total: int) -> None:
            seen.append((done, total))
            if len(seen) == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            graph.build(batch_size=4, on_progress=stop_after_two_batches)
        assert seen[:3] == [(0, 15), (4, 15), (8, 15)]
        partial = kb.verify()
        assert not partial["ok"] and "7 chunks are not in the graph" in " ".join(partial["problems"])
        report = kb.build_graph()
        assert report["resumed_from"] == 8 and report["extracted"] == 7 and report["chunks"] == 15
        assert report["communities"]["communities"] >= 0
        assert kb.verify()["ok"]
        assert {k: n for k, (_, n) in _entities(kb).items()} == expected
        # From now on the KB keeps its graph, even when opened without graph = true.
    with KnowledgeBase.open(tmp_path / "kb-plain", embedder=embedder) as kb:
        assert kb.graph is not None
        (docs / "new.md").write_text("Quentin Blake joined Team3.\n")
        kb.ingest(docs)
        assert "quentinblake" in _entities(kb) and kb.verify()["ok"]


def test_drop_removes_the_graph_and_graph_mode_says_how_to_build_one(kb, docs):
    kb.ingest(docs)
    kb.graph.drop()
    assert kb.graph is None and not graph_enabled(kb.store)
    tables = {r[0] for r in sqlite3.connect(kb.path / "ragtune.db").execute(
        "SELECT name FROM sqlite_master WHERE name LIKE 'graph%'")}
    assert not tables
    with pytest.raises(ConfigError, match="graph build"):
        kb.search("Who leads Lumen?", mode="graph")
    assert kb.search("Who leads Lumen?", mode="auto")  # auto works without a graph (hybrid, decompose)
