"""response_format on /v1/chat/completions, driven by the official openai client against the real server."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from harness import EXAMPLES, RunningServer, running_server
from pydantic import BaseModel

from ragtune.kb import KnowledgeBase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def fill(shape: Any, source: str) -> Any:
    """A careful model: the shape the prompt asks for, filled from source [1] (numbers with its first number)."""
    if isinstance(shape, dict):
        return {k: fill(v, source) for k, v in shape.items()}
    if isinstance(shape, list):
        return [fill(v, source) for v in shape]
    if shape in ("<integer>", "<number>"):
        found = re.search(r"\d+", source)
        return int(found.group()) if found else 0
    if shape == "<boolean>":
        return True
    return source.split(".")[0].strip()


class JsonLLM(BaseHTTPRequestHandler):
    """Answers the first structured request of each conversation with invalid JSON, then with valid JSON."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][1]["content"] if len(body["messages"]) > 1 else body["messages"][-1]["content"]
        retried = any(m["role"] == "assistant" for m in body["messages"])
        shape = re.search(r"a value of that type:\n(.+?)(?:\nRequired fields[^\n]*)?\n\nJSON:", prompt, re.S)
        source = re.search(r'<source n="1">\n(.+?)\n</source>', prompt, re.S)
        if shape and source:
            text = json.dumps(fill(json.loads(shape.group(1)), source.group(1))) if retried else '{"oops": true'
        else:
            text = '{"answer": "ok"}'
        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder) -> Iterator[RunningServer]:
    llm = ThreadingHTTPServer(("127.0.0.1", 0), JsonLLM)
    threading.Thread(target=llm.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    root = tmp_path_factory.mktemp("structured")
    with KnowledgeBase.open(root / "handbook", create=True, embedder=embedder) as kb:
        kb.ingest(EXAMPLES / "handbook")
    yield from running_server(root, embedder, f"http://127.0.0.1:{llm.server_address[1]}/v1")
    llm.shutdown()


class Refunds(BaseModel):
    summary: str
    days: int


def test_the_openai_client_gets_json_its_schema_validates(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key=server.keys["reader"], max_retries=0)
    schema = {"type": "object", "properties": {"summary": {"type": "string"}, "days": {"type": "integer"}},
              "required": ["summary", "days"], "additionalProperties": False}
    completion = client.chat.completions.create(
        model="kb:handbook", messages=[{"role": "user", "content": "How many days do customers have for a refund?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "refunds", "schema": schema, "strict": True}})
    data = json.loads(completion.choices[0].message.content)
    assert set(data) == {"summary", "days"} and isinstance(data["days"], int)
    extras = completion.model_extra
    assert extras["attempts"] == 2 and extras["sources"] and "/summary" in extras["field_sources"]
    parsed = client.beta.chat.completions.parse(
        model="kb:handbook", messages=[{"role": "user", "content": "How many days do customers have for a refund?"}],
        response_format=Refunds)
    assert isinstance(parsed.choices[0].message.parsed, Refunds)


def test_an_invalid_schema_and_a_reply_that_never_validates_are_clear_errors(server):
    with server.client("reader") as http:
        bad = http.post("/v1/chat/completions", json={
            "model": "kb:handbook", "messages": [{"role": "user", "content": "refund days?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}})
        assert bad.status_code == 400 and "invalid JSON Schema" in bad.json()["error"]["message"]
        never = http.post("/v1/chat/completions", json={
            "model": "kb:handbook", "messages": [{"role": "user", "content": "refund days?"}], "retries": 0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "required": ["days"]}}}})
        assert never.status_code == 422 and never.json()["error"]["code"] == "schema_validation_failed"
        passthrough = http.post("/v1/chat/completions", json={
            "model": "fake-extractive", "messages": [{"role": "user", "content": "say ok"}],
            "response_format": {"type": "json_object"}})
        assert passthrough.status_code == 200
        assert json.loads(passthrough.json()["choices"][0]["message"]["content"]) == {"answer": "ok"}
