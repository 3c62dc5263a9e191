"""The key, feedback and jobs commands as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.feedback import FeedbackStore
from ragtune.kb import KnowledgeBase
from ragtune.server.keys import KeyStore
from ragtune.types import Answer, ChunkMeta, Hit

pytestmark = pytest.mark.e2e


def _ragtune(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # A clean environment (no RAGTUNE_* of the caller), but the same sources when PYTHONPATH points at them.
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    return subprocess.run([sys.executable, "-m", "ragtune", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


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


def test_keys_land_where_the_server_that_serves_the_kb_reads_them(tmp_path: Path, embedder) -> None:
    from fastapi.testclient import TestClient

    from ragtune.server import create_app
    from ragtune.settings import load_settings

    root, work = tmp_path / "kbs", tmp_path / "work"
    work.mkdir()
    KnowledgeBase.open(root / "handbook", create=True, embedder=embedder).close()
    # --kb takes the KB's folder, as every other --kb does (a bare name with --kb-root is the KB in that root).
    by_path = _ragtune("keys", "create", "--kb", str(root / "handbook"), "--json", cwd=work)
    by_name = _ragtune("keys", "create", "--kb", "handbook", "--kb-root", str(root), "--role", "writer", "--json",
                       cwd=work)
    everything = _ragtune("keys", "create", "--kb", "*", "--kb-root", str(root), "--role", "admin", "--json", cwd=work)
    keys = [json.loads(r.stdout) for r in (by_path, by_name, everything)]
    assert {k["server_db"] for k in keys} == {str(root / "ragtune_server.db")}
    assert [k["kb"] for k in keys] == ["handbook", "handbook", "*"] and all(k["kb_exists"] for k in keys[:2])
    later = _ragtune("keys", "create", "--kb", str(root / "manuals"), cwd=work)
    assert later.returncode == 0 and "no knowledge base at" in later.stderr
    assert "works once it is created" in later.stderr
    assert f"stored in {root / 'ragtune_server.db'}" in later.stdout

    # The server 'ragtune serve --kb ROOT/handbook' (or --kb-root ROOT) reads those keys; nothing lands in the cwd.
    app = create_app(kbs=[root / "handbook"], settings=load_settings(), embedder=embedder)
    with TestClient(app) as http:
        for key in keys:
            models = http.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"})
            assert models.status_code == 200 and "kb:handbook" in [m["id"] for m in models.json()["data"]]
    for args in (["--kb-root", str(root)], ["--kb", str(root / "handbook")]):
        listed = json.loads(_ragtune("keys", "list", *args, "--json", cwd=work).stdout)
        assert len(listed) == 4
    assert list(work.iterdir()) == []

    # Without a server named, or naming one that has no keys: an error, and no empty database made.
    nowhere = _ragtune("keys", "list", cwd=work)
    assert nowhere.returncode == 1 and "--kb-root" in nowhere.stderr
    elsewhere = _ragtune("keys", "list", "--kb-root", str(tmp_path / "typo"), cwd=work)
    assert elsewhere.returncode == 1 and "no server database at" in elsewhere.stderr
    assert not (tmp_path / "typo").exists() and list(work.iterdir()) == []
    star = _ragtune("keys", "create", "--kb", "*", cwd=work)
    assert star.returncode == 1 and "--kb-root" in star.stderr
    outside = _ragtune("keys", "create", "--kb", str(tmp_path / "x" / "y"), "--kb-root", str(root), cwd=work)
    assert outside.returncode == 1 and "is not a knowledge base of --kb-root" in outside.stderr


def test_jobs_lists_and_follows_the_servers_ingestion_jobs(live) -> None:
    import httpx

    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.keys['writer']}"}) as http:
        upload = http.post("/v1/kbs/handbook/documents", files=[
            ("files", ("parking.txt", b"Parking passes are handed out by reception.", "text/plain")),
            ("files", ("broken.pdf", b"%PDF-1.4\n this is a truncated pdf", "application/pdf"))])
        assert upload.json()["rejected"] == [], upload.text
        job_id = upload.json()["job"]["id"]
    followed = _ragtune("jobs", job_id, "--follow", "--url", live.url, "--key", live.keys["writer"], "--json")
    job = json.loads(followed.stdout)
    assert job["id"] == job_id and job["status"] == "done" and job["files_done"] == 2
    assert followed.returncode == 1, "a job with a failed file fails --follow"
    assert [e["file"] for e in job["errors"]] == ["broken.pdf"]
    listed = _ragtune("jobs", "--url", live.url, "--key", live.keys["reader"])
    assert listed.returncode == 0 and job_id in listed.stdout and "done" in listed.stdout
    shown = _ragtune("jobs", job_id, "--url", live.url, "--key", live.keys["reader"])
    assert "parking.txt, broken.pdf" in shown.stdout and "failed broken.pdf" in shown.stderr
    other = json.loads(_ragtune("jobs", "--url", live.url, "--key", live.keys["other_reader"], "--json").stdout)
    assert job_id not in [j["id"] for j in other]
    no_key = _ragtune("jobs", "--url", live.url)
    assert no_key.returncode == 1 and "wants an API key" in no_key.stderr
    down = _ragtune("jobs", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "no ragtune server answered at http://127.0.0.1:9" in down.stderr


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

    store = FeedbackStore(kb)
    store.add("a1", "up")
    store.close()
    listed = _ragtune("feedback", "list", "--kb", str(kb))
    assert listed.returncode == 0, listed.stderr
    assert "1 👍 · 1 👎" in listed.stdout and "Refund window?" in listed.stdout
    assert "👎 down" in listed.stdout and "45 days from the invoice date [1]. / be precise" in listed.stdout
    ups = json.loads(_ragtune("feedback", "list", "--kb", str(kb), "--rating", "up", "--json").stdout)
    assert [r["rating"] for r in ups] == ["up"] and ups[0]["answer_id"] == "a1"
    assert not out.with_name("other.jsonl").exists()  # listing writes nothing
    assert row["corrected_answer"].startswith("45 days from") and row["contexts"] == ["Refunds within 45 days."]
