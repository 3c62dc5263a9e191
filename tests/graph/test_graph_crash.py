"""SIGKILL during a graph-enabled ingest: the KB still verifies (graph included) and a rerun completes it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INGEST = """
import sys
from ragtune.kb import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1], create=True, graph=True)
kb.ingest(sys.argv[2])
kb.close()
"""


def _committed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM graph_chunks").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_graph_ingest_leaves_a_kb_that_verifies_and_resumes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(60):
        people = " ".join(f"Engineer Person{i}x{j} Miller fixed ticket FAC-{i * 100 + j} for Team{j}."
                          for j in range(8))
        (corpus / f"doc{i:03d}.md").write_text(f"# Report {i}\n\n{people}\n")
    kb_path = tmp_path / "kb"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAGTUNE_EMBED_BATCH_SIZE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(kb_path), str(corpus)], env=env)
    deadline = time.monotonic() + 240
    try:
        while _committed(kb_path / "ragtune.db") == 0:
            assert proc.poll() is None, "ingest finished before it could be interrupted"
            assert time.monotonic() < deadline, "nothing was committed in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

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
