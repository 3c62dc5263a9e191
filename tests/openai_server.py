"""A real, minimal OpenAI-compatible HTTP server for tests: free local ports, the bundled model behind it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragtune.errors import ConfigError
from ragtune.llm import LocalLLM

PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed", "repetition_penalty", "no_repeat_ngram_size")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the timeout test) breaks the pipe; that is expected, not worth a traceback."""


@pytest.fixture()
def serve() -> Iterator[Callable[[type[BaseHTTPRequestHandler]], str]]:
    """Starts HTTP servers on free local ports; gives each one's base URL; stops them all afterwards."""
    servers: list[_Server] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = _Server(("127.0.0.1", 0), handler)
        # A short poll interval keeps shutdown() quick.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keeps the test output clean
        pass

    def read_json(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_events(self, events: list[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            self.wfile.write(f"{event}\n\n".encode())
            self.wfile.flush()


def _chunk(model: str, delta: dict[str, str], finish_reason: str | None = None) -> str:
    return "data: " + json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def local_llm_handler(llm: LocalLLM) -> type[BaseHTTPRequestHandler]:
    """A minimal OpenAI-compatible /v1/chat/completions endpoint answering with ``llm``."""

    class LocalLLMHandler(_Handler):
        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = self.read_json()
            params = {name: body[name] for name in PARAMS if name in body}
            try:
                if body.get("stream"):
                    pieces = llm.stream(body["messages"], **params)
                else:
                    answer = llm.chat(body["messages"], **params)
            except ConfigError as exc:
                self.send_json(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
                return
            if not body.get("stream"):
                self.send_json(200, _completion(body["model"], answer))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            first = _chunk(body["model"], {"role": "assistant"})
            for event in [first, *(_chunk(body["model"], {"content": p}) for p in pieces)]:
                self.wfile.write(f"{event}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(f"{_chunk(body['model'], {}, 'stop')}\n\ndata: [DONE]\n\n".encode())

    return LocalLLMHandler
