"""Server test harness: a fake extractive LLM over HTTP and the real app under uvicorn (shared with tests/e2e)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ragtune.llm.openai import OpenAICompatibleLLM
from ragtune.server import create_app
from ragtune.settings import load_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def extractive_reply(messages: list[dict[str, str]]) -> str:
    """Answer like a careful model would: the sentence of source [1] that shares most words with the question."""
    prompt = messages[-1]["content"]
    match = re.search(r"\[1\] (.+?)(?:\n\n\[2\]|\n\n(?:Question|问题)[:：])", prompt, re.S)
    if not match:
        return "I don't know."
    question = set(re.findall(r"\w+", prompt.rsplit("\n", 1)[-1].lower()))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?。])\s+|\n+", match.group(1)) if len(s.strip()) > 10]
    best = max(sentences, key=lambda s: len(question & set(re.findall(r"\w+", s.lower()))), default="")
    return f"{best.rstrip('.')} [1]." if best else "I don't know."


class FakeLLMHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible chat endpoint answering with ``extractive_reply``, streamed word by word."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = extractive_reply(body["messages"])
        if not body.get("stream"):
            data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                            "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(text.split(" ")):
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word},
                                  "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def fake_llm_server() -> Iterator[str]:
    """Runs the fake LLM on a free port; yields its base URL."""
    server = _QuietServer(("127.0.0.1", 0), FakeLLMHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    app: Any
    keys: dict[str, str]
    root: Path

    @property
    def state(self) -> Any:
        return self.app.state.server

    def client(self, key: str | None = "admin", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)


def start_uvicorn(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, url


def running_server(root: Path, embedder: Any, llm_url: str, **settings: Any) -> Iterator[RunningServer]:
    config = load_settings(**{"server_db": str(root / "server.db"), "rate_limit_per_minute": 6000,
                              "rate_limit_burst": 1000, **settings})
    llm = OpenAICompatibleLLM("fake-extractive", base_url=llm_url, max_retries=0, timeout=30)
    app = create_app(kb_root=root, settings=config, embedder=embedder, llm=llm)
    keystore = app.state.server.keys
    keys = {
        "admin": keystore.create("*", "admin", "test admin")[0],
        "reader": keystore.create("handbook", "reader")[0],
        "writer": keystore.create("handbook", "writer")[0],
        "other_reader": keystore.create("other", "reader")[0],
    }
    server, thread, url = start_uvicorn(app)
    yield RunningServer(url, app, keys, root)
    server.should_exit = True
    thread.join(30)


def wait_job(client: httpx.Client, kb: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/kbs/{kb}/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)
