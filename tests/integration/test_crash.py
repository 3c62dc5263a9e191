"""Crash safety: SIGKILL in the middle of an ingest loses no committed document and half-writes none."""

from __future__ import annotations

from pathlib import Path

import pytest
from sigkill import committed_rows, kill_once_committed, widget_corpus

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INGEST = """
import sys
from ragtune.kb import KnowledgeBase
kb = KnowledgeBase.open(sys.argv[1], create=True)
kb.ingest(sys.argv[2])
kb.close()
"""


def test_sigkill_mid_ingest_keeps_committed_documents_intact(tmp_path):
    corpus = tmp_path / "corpus"
    widget_corpus(corpus, 400)  # several flushes of 16 batches of 8 chunks
    kb_path = tmp_path / "kb"
    kill_once_committed(INGEST, [str(kb_path), str(corpus)],
                        lambda: committed_rows(kb_path / "ragtune.db", "documents") > 0, embed_batch_size=8)

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
