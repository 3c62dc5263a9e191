"""The key and feedback commands as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.feedback import FeedbackStore
from ragtune.kb import KnowledgeBase
from ragtune.server.keys import KeyStore
from ragtune.types import Answer, ChunkMeta, Hit

pytestmark = pytest.mark.e2e


def _ragtune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragtune", *args], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    root = str(tmp_path)
    created = _ragtune("keys", "create", "--kb", "handbook", "--role", "writer", "--name", "ci", "--kb-root", root,
                       "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["role"] == "writer" and key["kb"] == "handbook" and key["key"].startswith("rt_")

    store = KeyStore(tmp_path / "ragtune_server.db")
    found = store.verify(key["key"])
    assert found is not None and found.allows("handbook", "writer") and not found.allows("other", "reader")
    assert key["key"] not in (tmp_path / "ragtune_server.db").read_bytes().decode("latin-1"), "stored hashed only"
    store.close()

    listed = json.loads(_ragtune("keys", "list", "--kb-root", root, "--json").stdout)
    assert [(k["id"], k["revoked"]) for k in listed] == [(key["id"], False)]
    assert _ragtune("keys", "revoke", key["id"], "--kb-root", root).returncode == 0
    again = _ragtune("keys", "revoke", key["id"], "--kb-root", root)
    assert again.returncode == 1 and "no live key" in again.stderr
    bad = _ragtune("keys", "create", "--kb", "handbook", "--role", "root", "--kb-root", root)
    assert bad.returncode == 1 and "role" in bad.stderr.lower()


def test_feedback_export_writes_the_training_format(tmp_path: Path, embedder) -> None:
    kb = tmp_path / "kb"
    KnowledgeBase.open(kb, create=True, embedder=embedder).close()
    store = FeedbackStore(kb)
    source = Hit(chunk_id="c1", document_id="d1", source="refunds.md", text="Refunds within 45 days.", score=1.0,
                 meta=ChunkMeta())
    store.record_answer(Answer(id="a1", question="Refund window?", answer="45 days [1].", grounded=True,
                               sources=[source]))
    store.add("a1", "down", corrected_answer="45 days from the invoice date [1].", comment="be precise")
    store.close()
    out = tmp_path / "feedback.jsonl"
    done = _ragtune("feedback", "export", str(out), "--kb", str(kb), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exported"] == 1
    row = json.loads(out.read_text().splitlines()[0])
    assert row["question"] == "Refund window?" and row["rating"] == "down"
    assert row["corrected_answer"].startswith("45 days from") and row["contexts"] == ["Refunds within 45 days."]
