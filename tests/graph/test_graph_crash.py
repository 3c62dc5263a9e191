"""SIGKILL during a graph-enabled ingest: the KB still verifies (graph included) and a rerun completes it."""

from __future__ import annotations

import pytest
from sigkill import committed_rows, kill_once_committed

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INGEST = """
import sys
from ragtune.kb import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1], create=True, graph=True)
kb.ingest(sys.argv[2])
kb.close()
"""


def test_sigkill_mid_graph_ingest_leaves_a_kb_that_verifies_and_resumes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(60):
        people = " ".join(f"Engineer Person{i}x{j} Miller fixed ticket FAC-{i * 100 + j} for Team{j}."
                          for j in range(8))
        (corpus / f"doc{i:03d}.md").write_text(f"# Report {i}\n\n{people}\n")
    kb_path = tmp_path / "kb"
    kill_once_committed(INGEST, [str(kb_path), str(corpus)],
                        lambda: committed_rows(kb_path / "ragtune.db", "graph_chunks") > 0, embed_batch_size=1)

    with KnowledgeBase.open(kb_path) as kb:
        committed = kb.documents()
        assert 0 < len(committed) < 60, "the kill should land mid-run"
        report = kb.verify()
        assert report["ok"], report["problems"]  # every stored chunk is in the graph, nothing more
        assert kb.graph is not None and kb.graph.stats()["chunks_missing"] == 0
        resumed = kb.ingest(corpus)
        assert resumed.ok and len(resumed.unchanged) == len(committed)
        assert kb.stats()["documents"] == 60
        assert kb.verify()["ok"]
        assert kb.graph.find("FAC-5907") is not None  # from the last document
