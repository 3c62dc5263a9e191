"""`ragtune kb migrate`: a KB copied local → Postgres → local (and to Milvus) keeps its documents, chunks, vectors,
feedback and results, without re-embedding, and the source is left as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragtune.feedback import FeedbackStore
from ragtune.kb import KnowledgeBase
from ragtune.migrate import migrate
from ragtune.store.factory import POINTER_FILE
from ragtune.types import Answer

QUERIES = ["how do I rotate API keys", "refund window for enterprise plans", "年假有多少天"]


def snapshot(kb_dir: Path) -> dict:
    """Documents, chunks (with vectors) and the top 10 of a few queries, keyed so two stores compare."""
    with KnowledgeBase.open(kb_dir) as kb:
        store = kb.store
        documents = [(d.id, d.uri, d.status, d.error, d.duplicate_of, d.chunk_count, d.content_hash, d.version, d.title,
                      d.metadata) for d in store.documents()]
        chunks = {}
        for update in store.export([d.id for d in store.documents()]):
            for chunk, vector, tokens in zip(update.chunks, update.vectors, update.tokens or [], strict=True):
                chunks[(update.record.id, chunk.meta.chunk_index)] = (chunk.text, chunk.start, chunk.end,
                                                                      chunk.meta.model_dump(), tokens, vector)
        results = {(q, mode): [(h.document_id, h.meta.chunk_index) for h in kb.search(q, k=10, mode=mode)]
                   for q in QUERIES for mode in ("hybrid", "dense", "sparse")}
        with FeedbackStore(kb_dir) as feedback:
            ratings = [(r.to_json(), r.documents, r.id) for r in feedback.records()]
    return {"documents": documents, "chunks": chunks, "results": results, "feedback": ratings}


def same(a: dict, b: dict) -> None:
    assert a["documents"] == b["documents"]
    assert a["chunks"].keys() == b["chunks"].keys()
    for key, (*fields, vector) in a["chunks"].items():
        *others, other_vector = b["chunks"][key]
        assert fields == others, key
        np.testing.assert_array_equal(vector, other_vector)
    assert a["results"] == b["results"]
    assert a["feedback"] == b["feedback"]


@pytest.fixture()
def source(tmp_path: Path, embedder, docs_dir: Path) -> Path:
    kb_dir = tmp_path / "kb"
    shutil.copy(docs_dir / "handbook" / "security.md", docs_dir / "security-copy.md")
    (docs_dir / "broken.docx").write_bytes(b"not a zip file")
    with KnowledgeBase.open(kb_dir, create=True, embedder=embedder) as kb:
        kb.ingest(docs_dir)
        hit = kb.search("refund window", k=1)[0]
        assert kb.set_acl(hit.document_id, "support")  # access groups travel with the chunks
    with FeedbackStore(kb_dir) as feedback:
        feedback.record_answer(Answer(id="a1", question="refund window?", answer="45 days [1]", grounded=True,
                                      sources=[hit]))
        feedback.add("a1", "up", comment="right")
    return kb_dir


@pytest.mark.integration
def test_a_round_trip_through_postgres_keeps_everything(tmp_path: Path, source: Path, postgres_url: str) -> None:
    before = snapshot(source)
    assert len(before["documents"]) == 7 and before["feedback"]  # 5 files, a duplicate, a failed file
    assert before["feedback"][0][1] and any(d[9].get("acl") == ["support"] for d in before["documents"])
    untouched = (source / "ragtune.db").read_bytes()
    there = migrate(source, postgres_url, out=tmp_path / "kb-pg", name="roundtrip")
    assert there.ok, there.problems
    assert (there.copied, there.feedback, there.counts_match) == (7, 1, True)
    assert there.identical_top10 == {"dense": there.queries, "sparse": there.queries}
    assert json.loads((tmp_path / "kb-pg" / POINTER_FILE).read_text())["name"] == "roundtrip"
    same(before, snapshot(tmp_path / "kb-pg"))
    back = migrate(tmp_path / "kb-pg", "local", out=tmp_path / "kb-back")
    assert back.ok and back.copied == 7
    same(before, snapshot(tmp_path / "kb-back"))
    assert (source / "ragtune.db").read_bytes() == untouched  # the source was only read
    again = migrate(source, postgres_url, out=tmp_path / "kb-pg", name="roundtrip")  # a re-run resumes: no copy
    assert again.ok and (again.copied, again.skipped, again.feedback) == (0, 7, 0)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_cli_copies_a_kb_to_milvus(tmp_path: Path, source: Path, milvus_url: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "ragtune", "kb", "migrate", "--kb", str(source), "--to", milvus_url,
                          "--out", str(tmp_path / "kb-milvus"), "--json"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["copied"] == 7 and report["counts_match"]
    assert report["identical_top10"]["sparse"] == report["queries"]
    same(snapshot(source), snapshot(tmp_path / "kb-milvus"))
    refused = subprocess.run([sys.executable, "-m", "ragtune", "kb", "migrate", "--kb", str(source), "--to",
                              "postgres://nowhere:1/x", "--out", str(source), "--json"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 1 and "folder of its own" in json.loads(refused.stdout)["error"]


@pytest.mark.integration
def test_a_copy_ranks_ties_and_near_neighbours_as_the_source_does(tmp_path: Path, embedder, postgres_url: str) -> None:
    """Written out of URI order, with BM25 ties: the copies number chunks in the source's order, so a tie goes to
    the same chunk in every copy, and dense search below exact_search_below is exact, so the copy's graph (built
    in another order) cannot change a rank."""
    kb_dir, docs = tmp_path / "kb", tmp_path / "docs"
    docs.mkdir()
    notes = {f"{name}.md": f"# Shift notes {name}\n\nThe night shift checks the boiler pressure gauge.\n"
             for name in ("zulu", "mike", "alpha", "kilo")}
    with KnowledgeBase.open(kb_dir, create=True, embedder=embedder) as kb:
        for name, text in notes.items():  # one ingest each, in reverse alphabetical order
            (docs / name).write_text(text)
            assert kb.ingest(docs / name).ok
        (docs / "mike.md").write_text(notes["mike.md"] + "\nAlso the backup generator.\n")
        assert kb.ingest(docs / "mike.md").ok  # a new version: its chunks are written last
        order = kb.store.write_order()
    assert len(order) == 4
    before = snapshot(kb_dir)
    ties = [h.meta.source for h in KnowledgeBase.open(kb_dir).search("boiler pressure gauge night shift", k=4,
                                                                      mode="sparse")]
    assert [Path(s).stem for s in ties] != sorted(Path(s).stem for s in ties)  # not URI order: the test can fail
    pg = migrate(kb_dir, postgres_url, out=tmp_path / "kb-pg", name="ties")
    assert pg.ok, pg.problems
    back = migrate(tmp_path / "kb-pg", "local", out=tmp_path / "kb-back")
    assert back.ok, back.problems
    with KnowledgeBase.open(tmp_path / "kb-pg") as there:
        assert there.store.write_order() == order
    same(before, snapshot(tmp_path / "kb-back"))
    with KnowledgeBase.open(kb_dir) as a, KnowledgeBase.open(tmp_path / "kb-back") as b:
        for mode in ("sparse", "dense", "hybrid"):
            query = "boiler pressure gauge night shift"
            assert [h.chunk_id for h in a.search(query, 4, mode=mode)] == [h.chunk_id for h in b.search(query, 4,
                                                                                                        mode=mode)]
