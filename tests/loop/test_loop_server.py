"""The loop over HTTP: GET /v1/loop and POST /v1/loop/run as a background job (roles enforced), and a running
server that switches to a promoted champion — demonstrations and a re-embedded KB — without a restart, while it
answers."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import write_recipe
from harness import FakeLLMHandler, RunningServer, running_server

from ragtune.kb import KnowledgeBase
from ragtune.loop import init_loop, rollback
from ragtune.loop.workspace import Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = """
[evalset]
feedback_share = 0.4
unanswerable = 0.2
[embedder]
enabled = false
[demonstrations]
enabled = true
min_examples = 3
[demonstrations.gate]
target = "answer_correctness"
guards = { refusal_accuracy = 0.01, citation_precision = 0.01, faithfulness = 0.01, latency_p95 = 3.0 }
[measure]
resamples = 1000
latency_questions = 4
"""
#: Every message list the fake LLM was sent, newest last.
SEEN: list[list[dict[str, str]]] = []


class RecordingLLM(FakeLLMHandler):
    """The harness's extractive fake, recording what it is asked."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        SEEN.append(json.loads(body)["messages"])
        self.rfile = _Replay(body)  # let the fake read the body again
        self.headers.replace_header("Content-Length", str(length))
        super().do_POST()


class _Replay:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int) -> bytes:
        return self.data[:n]


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, handbook_base: Path, embedder: Any) -> Iterator[RunningServer]:
    llm = _Quiet(("127.0.0.1", 0), RecordingLLM)
    threading.Thread(target=llm.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    root = tmp_path_factory.mktemp("loop-kbs")
    shutil.copytree(handbook_base, root / "handbook")
    yield from running_server(root, embedder, f"http://127.0.0.1:{llm.server_address[1]}/v1")
    llm.shutdown()
    llm.server_close()


def wait_loop_job(http: Any, kb: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = http.get("/v1/loop", params={"kb": kb}).json()["jobs"]
        if jobs and jobs[0]["status"] in ("done", "failed") or time.monotonic() > deadline:
            return dict(jobs[0]) if jobs else {}
        time.sleep(0.3)


def test_loop_over_http_then_a_promotion_reaches_the_running_server(server: RunningServer) -> None:
    kb_path = server.root / "handbook"
    with server.client("admin") as http:
        before = http.get("/v1/loop", params={"kb": "handbook"}).json()
        assert before["initialised"] is False and "ragtune loop init" in before["hint"]
        assert http.post("/v1/loop/run", json={"kb": "handbook"}).json()["error"]["code"] == "loop_not_initialised"
        # A rating through the API joins the scripted ones.
        answer = http.post("/v1/chat/completions", json={
            "model": "kb:handbook", "messages": [{"role": "user", "content": "How long must passwords be?"}]}).json()
        assert http.post("/v1/feedback", json={"answer_id": answer["answer_id"], "rating": "up"}).status_code == 201

    init_loop(server.state.kbs.get("handbook"), write_recipe(kb_path.parent / "loop.toml", RECIPE))

    with server.client("reader") as http:
        status = http.get("/v1/loop", params={"kb": "handbook"}).json()
        assert status["initialised"] and status["kb"] == "handbook" and not status["can_run"]
        assert status["feedback"]["up"] == 26 and status["stages"]["demonstrations"]["champion"] == "v000"
        assert http.post("/v1/loop/run", json={"kb": "handbook"}).json()["error"]["code"] == "insufficient_role"
    with server.client("admin") as http:
        queued = http.post("/v1/loop/run", json={"kb": "handbook"})
        assert queued.status_code == 202 and queued.json()["job"]["kind"] == "loop"
        job = wait_loop_job(http, "handbook")
        assert job["status"] == "done", job
        outcome = job["report"]["stages"]["demonstrations"]["outcome"]
        assert outcome in ("promoted", "rejected")
        status = http.get("/v1/loop", params={"kb": "handbook"}).json()
        decision = [h for h in status["history"] if h.get("kind") == "decision"][-1]
        assert decision["verdict"] == outcome and decision["target"]["metric"] == "answer_correctness"
        assert {"answer_correctness", "faithfulness", "citation_precision"} <= set(decision["metrics"])
        assert status["can_run"]
        # Ingestion jobs and loop jobs are kept apart.
        assert all(j.get("kind", "ingest") == "ingest" for j in http.get("/v1/kbs/handbook/jobs").json()["data"])

    # Serve the demonstrations (a rollback is a promotion of a kept version) while the server answers.
    if outcome == "rejected":
        target = "v001"
        errors, answers = _answering_while(server, lambda: rollback(server.state.kbs.get("handbook"),
                                                                     "demonstrations", to=target))
    else:
        target = "v001"
        errors, answers = _answering_while(server, lambda: None)
    assert not errors and answers > 0
    SEEN.clear()
    with server.client("reader") as http:
        http.post("/v1/chat/completions", json={"model": "kb:handbook", "messages": [
            {"role": "user", "content": "What is the refund window for enterprise plans?"}]})
    shown = next(m for m in SEEN if m[0]["role"] == "system" and "Sources" in m[-1]["content"])
    assert len(shown) > 2 and shown[1]["role"] == "user" and shown[2]["role"] == "assistant"  # worked examples
    assert Workspace(kb_path).serving()["demonstrations"].endswith(f"{target}/demonstrations.jsonl")


def test_a_reembedded_kb_is_reopened_while_requests_keep_being_answered(server: RunningServer, tmp_path: Path,
                                                                        embedder: Any) -> None:
    """'kb reembed''s atomic swap (the embedder stage's promotion) by another process: the server keeps answering
    through it and then serves the new vectors with the new model."""
    from ragtune.embed.sentence_transformers import resolve_model

    copy = tmp_path / "minilm-copy"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), copy)

    def swap() -> None:
        with KnowledgeBase.open(server.root / "handbook") as kb:
            kb.reembed(str(copy))

    errors, answers = _answering_while(server, swap)
    assert not errors and answers > 0
    with server.client("reader") as http:
        kbs = {k["name"]: k for k in http.get("/v1/kbs").json()["data"]}
        assert kbs["handbook"]["embedder"] == str(copy.resolve())
        hits = http.post("/v1/kbs/handbook/search", json={"query": "refund window enterprise", "k": 3}).json()["hits"]
        assert hits and "refunds" in hits[0]["name"]
    assert server.state.kbs.get("handbook").embedder.name == str(copy.resolve())


def _answering_while(server: RunningServer, change: Any) -> tuple[list[str], int]:
    """Ask questions from two threads while ``change`` runs; returns the failures and the answers given."""
    stop = threading.Event()
    errors: list[str] = []
    answered = [0]

    def ask() -> None:
        with server.client("reader") as http:
            while not stop.is_set():
                reply = http.post("/v1/chat/completions", json={"model": "kb:handbook", "messages": [
                    {"role": "user", "content": "How long is the refund window for enterprise customers?"}]})
                if reply.status_code != 200 or not reply.json()["choices"][0]["message"]["content"]:
                    errors.append(reply.text[:300])
                answered[0] += 1

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    try:
        change()
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return errors, answered[0]
