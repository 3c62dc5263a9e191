"""Crash safety: SIGKILL in the middle of an ingest loses no committed document and half-writes none."""

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
kb = KnowledgeBase.open(sys.argv[1], create=True)
kb.ingest(sys.argv[2])
kb.close()
"""


def _make_corpus(directory: Path, n: int) -> None:
    directory.mkdir()
    for i in range(n):
        sentences = " ".join(f"Fact {i}.{j}: the widget number {i} has property {j * 7 % 13}." for j in range(12))
        (directory / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n{sentences}\n")


def _committed_documents(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_ingest_keeps_committed_documents_intact(tmp_path):
    corpus = tmp_path / "corpus"
    _make_corpus(corpus, 400)  # several flushes of 16 batches of 8 chunks
    kb_path = tmp_path / "kb"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "RAGTUNE_EMBED_BATCH_SIZE": "8"}
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(kb_path), str(corpus)], env=env)
    deadline = time.monotonic() + 240
    try:
        while _committed_documents(kb_path / "ragtune.db") == 0:
            assert proc.poll() is None, "ingest finished before it could be interrupted"
            assert time.monotonic() < deadline, "no document was committed in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with KnowledgeBase.open(kb_path) as kb:
        committed = kb.documents()
        assert 0 < len(committed) < 400, "the kill should land mid-run"
        report = kb.verify()
        assert report["ok"], report["problems"]  # every document has exactly its chunks, indexes caught up
        first = committed[0]
        number = int(Path(first.uri).stem.removeprefix("doc"))
        hits = kb.search(f"widget number {number} property", k=3, mode="sparse")
        assert any(h.document_id == first.id for h in hits)

        resumed = kb.ingest(corpus)
        assert resumed.ok
        assert len(resumed.unchanged) == len(committed)
        assert len(resumed.added) == 400 - len(committed)
        assert kb.stats()["documents"] == 400
        assert kb.verify()["ok"]
