"""Two `ragtune serve` processes on one Postgres store: they share knowledge bases, keys, feedback and the job
queue, and when the server running an ingestion job is SIGKILLed, the other one resumes and finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from harness import free_port

from ragtune.feedback import export_feedback
from ragtune.kb import KnowledgeBase
from ragtune.server.keys import KeyStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _serve(root: Path, port: int, store: str, llm_url: str) -> subprocess.Popen:
    """A server whose log goes to a file beside ``root`` (a pipe nobody reads would block it once full); a
    failing test prints the logs (see ``_logs``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "RAGTUNE_LLM": "openai", "RAGTUNE_LLM_BASE_URL": llm_url, "RAGTUNE_LLM_MODEL": "fake-extractive",
           "RAGTUNE_EMBED_BATCH_SIZE": "8"}
    with open(root.parent / f"server-{port}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--kb-root", str(root), "--port",
                                 str(port), "--store", store], env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=log)


def _logs(root: Path) -> str:
    logs = sorted(root.parent.glob("server-*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs)


def _ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(60)


def test_two_servers_share_a_store_and_one_finishes_the_job_of_the_other(tmp_path: Path, postgres_url: str,
                                                                        fake_llm_url: str) -> None:
    root = tmp_path / "kbs"
    root.mkdir()
    keys = KeyStore(postgres_url)
    headers = {"Authorization": f"Bearer {keys.create('*', 'admin', 'shared-store test')[0]}"}
    keys.close()
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    files = [("files", (f"doc{i:02d}.txt", (f"Record {i} concerns subject {i} of the archive. " * 30).encode(),
                        "text/plain")) for i in range(24)]
    first = _serve(root, int(urls[0].rsplit(":", 1)[1]), postgres_url, fake_llm_url)
    second: subprocess.Popen | None = None
    try:
        _ready(urls[0], first)
        a = httpx.Client(base_url=urls[0], headers=headers, timeout=120)
        assert a.post("/v1/kbs", json={"name": "team"}).status_code == 201
        seed = [("files", ("refunds.md", b"# Refunds\n\nEnterprise plans can be refunded within 45 days.",
                           "text/markdown"))]
        seed_job = a.post("/v1/kbs/team/documents", files=seed).json()["job"]["id"]
        deadline = time.monotonic() + 120
        while a.get(f"/v1/kbs/team/jobs/{seed_job}").json()["status"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        answer = a.post("/v1/chat/completions", json={
            "model": "kb:team", "messages": [{"role": "user", "content": "What is the refund window?"}]}).json()
        answer_id = answer["answer_id"]

        job_id = a.post("/v1/kbs/team/documents", files=files).json()["job"]["id"]
        while (job := a.get(f"/v1/kbs/team/jobs/{job_id}").json())["files_done"] < 2:
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline + 120
            time.sleep(0.05)

        # The second server sees what the first made; the first server's lock keeps the job to itself.
        second = _serve(root, int(urls[1].rsplit(":", 1)[1]), postgres_url, fake_llm_url)
        _ready(urls[1], second)
        b = httpx.Client(base_url=urls[1], headers=headers, timeout=120)
        # (The session's database also holds other tests' KBs: every server lists all KBs of its store.)
        assert "team" in [kb["name"] for kb in b.get("/v1/kbs").json()["data"]]
        assert b.get(f"/v1/kbs/team/jobs/{job_id}").json()["attempts"] == 1
        rated = b.post("/v1/feedback", json={"answer_id": answer_id, "rating": "up"})
        assert rated.status_code == 201 and rated.json()["kb"] == "team"

        _stop(first, signal.SIGKILL)
        deadline = time.monotonic() + 300
        while (job := b.get(f"/v1/kbs/team/jobs/{job_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done" and job["attempts"] == 2 and job["errors"] == []
        documents = b.get("/v1/kbs/team/documents").json()["data"]
        assert len(documents) == 25 and len({d["id"] for d in documents}) == 25
        assert all(d["status"] == "ok" and d["chunks"] > 0 for d in documents)
        hits = b.post("/v1/kbs/team/search", json={"query": "subject 17 of the archive", "k": 1}).json()["hits"]
        assert hits[0]["name"].endswith("doc17.txt")
    except BaseException:
        print(_logs(root))  # shown by pytest with the failure
        raise
    finally:
        _stop(first, signal.SIGKILL)
        if second is not None:
            _stop(second)
    with KnowledgeBase.open(root / "team") as kb:
        assert kb.verify()["ok"] and kb.stats()["documents"] == 25
    assert export_feedback(root / "team", tmp_path / "feedback.jsonl") == 1
