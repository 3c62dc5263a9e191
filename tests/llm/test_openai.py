"""OpenAICompatibleLLM against real HTTP servers: one serving the bundled model, others injecting faults."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from openai_server import _chunk, _completion, _Handler, local_llm_handler

from ragtune.errors import ConfigError, LLMError
from ragtune.llm import LLM, OpenAICompatibleLLM

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.integration
class TestAgainstALocalLLMServer:
    @pytest.fixture()
    def remote(self, smollm2: Any, serve: Callable[..., str]) -> Iterator[OpenAICompatibleLLM]:
        with OpenAICompatibleLLM("smollm2", base_url=serve(local_llm_handler(smollm2.llm))) as remote:
            yield remote

    def test_chat_and_stream_equal_the_local_models_output(self, smollm2: Any, remote: OpenAICompatibleLLM) -> None:
        expected = smollm2.llm.chat(QUESTION, max_tokens=24)
        assert remote.chat(QUESTION, max_tokens=24) == expected
        pieces = list(remote.stream(QUESTION, max_tokens=24))
        assert len(pieces) > 1
        assert "".join(pieces) == expected

    def test_parameters_reach_the_server(self, smollm2: Any, remote: OpenAICompatibleLLM) -> None:
        expected = smollm2.llm.chat(QUESTION, max_tokens=4, stop=["France"])
        assert remote.chat(QUESTION, max_tokens=4, stop=["France"]) == expected
        assert "".join(remote.stream(QUESTION, max_tokens=4, stop=["France"])) == expected

    def test_repetition_controls_reach_the_server(self, smollm2: Any, remote: OpenAICompatibleLLM) -> None:
        params = {"max_tokens": 24, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2}
        expected = smollm2.llm.chat(QUESTION, **params)
        assert expected != smollm2.llm.chat(QUESTION, max_tokens=24)
        assert remote.chat(QUESTION, **params) == expected

    def test_is_an_llm(self, remote: OpenAICompatibleLLM) -> None:
        assert isinstance(remote, LLM)
        assert remote.name == "smollm2"
        assert remote.context_window == 8192


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a dict is sent as JSON; a list of strings as server-sent events
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class Script:
    """Answers the n-th request with the n-th reply (the last one repeats) and records every request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = replies
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        script = self

        class ScriptedHandler(_Handler):
            def do_POST(self) -> None:
                script.requests.append((dict(self.headers), self.read_json()))
                reply = script.replies[min(len(script.requests), len(script.replies)) - 1]
                time.sleep(reply.delay)
                if isinstance(reply.body, list):
                    self.send_events(reply.body)
                    return
                data = json.dumps(reply.body).encode() if reply.body is not None else b"oops"
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return ScriptedHandler


OK = Reply(200, _completion("m", "hello"))
EVENTS = Reply(
    200,
    [
        ": keep-alive comment",
        _chunk("m", {"role": "assistant"}),
        _chunk("m", {"content": "hel"}),
        "event: message\n" + _chunk("m", {"content": "lo"}),
        _chunk("m", {}, "stop"),
        'data: {"id": "x", "choices": [], "usage": {"total_tokens": 3}}',
        "data: [DONE]",
        _chunk("m", {"content": " never read"}),
    ],
)


def _client(base_url: str, **kwargs: Any) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM("m", base_url=base_url, backoff=0.001, **kwargs)


@pytest.mark.integration
class TestFaults:
    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    def test_transient_errors_are_retried(self, serve: Callable[..., str], status: int) -> None:
        script = Script(Reply(status, {"error": {"message": "busy"}}), Reply(status), OK)
        assert _client(serve(script.handler())).chat(QUESTION) == "hello"
        assert len(script.requests) == 3

    def test_retries_run_out(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(500, {"error": {"message": "model crashed"}}))
        base_url = serve(script.handler())
        with pytest.raises(LLMError, match="HTTP 500 after 3 attempts: model crashed — the server failed"):
            _client(base_url, max_retries=2).chat(QUESTION)
        assert len(script.requests) == 3

    def test_client_error_is_not_retried_and_is_explained(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(400, {"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}}))
        base_url = serve(script.handler())
        with pytest.raises(LLMError) as caught:
            _client(base_url).chat(QUESTION)
        message = str(caught.value)
        for part in (f"{base_url}/chat/completions", "model 'm'", "HTTP 400", "max_tokens is too large"):
            assert part in message
        assert len(script.requests) == 1

    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            (Reply(404, {"detail": "Not Found"}), "HTTP 404: Not Found — check base_url"),
            (Reply(401, {"error": "invalid api key"}), "HTTP 401: invalid api key — check the API key"),
            (Reply(422, None), "HTTP 422: oops — the server rejected the request"),
        ],
    )
    def test_error_bodies_of_other_servers(self, serve: Callable[..., str], reply: Reply, expected: str) -> None:
        with pytest.raises(LLMError, match=expected):
            _client(serve(Script(reply).handler())).chat(QUESTION)

    def test_retry_after_is_honoured(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0.3"}), OK)
        started = time.monotonic()
        assert _client(serve(script.handler())).chat(QUESTION) == "hello"
        assert time.monotonic() - started >= 0.3

    def test_timeout(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(delay=1.0, body=_completion("m", "late")))
        base_url = serve(script.handler())
        with pytest.raises(LLMError, match=r"no answer within the timeout of 0\.2 s after 2 attempts"):
            _client(base_url, timeout=0.2, max_retries=1).chat(QUESTION)
        assert len(script.requests) == 2

    def test_connection_refused_hints_at_starting_the_server(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        base_url = f"http://127.0.0.1:{port}/v1"
        with pytest.raises(LLMError) as caught:
            _client(base_url, max_retries=1).chat(QUESTION)
        message = str(caught.value)
        assert f"{base_url}/chat/completions" in message
        assert "cannot connect after 2 attempts" in message
        assert "is the server running? start it with" in message

    def test_stream_parses_server_sent_events(self, serve: Callable[..., str]) -> None:
        script = Script(EVENTS)
        assert list(_client(serve(script.handler())).stream(QUESTION, max_tokens=7, stop=["\n"], seed=1)) == [
            "hel",
            "lo",
        ]
        body = script.requests[0][1]
        assert body == {
            "model": "m",
            "messages": QUESTION,
            "max_tokens": 7,
            "temperature": 0.0,
            "top_p": 1.0,
            "stream": True,
            "stop": ["\n"],
            "seed": 1,
        }

    def test_stream_is_retried_before_its_first_piece(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(503, {"error": {"message": "loading"}}), EVENTS)
        assert "".join(_client(serve(script.handler())).stream(QUESTION)) == "hello"
        assert len(script.requests) == 2

    def test_stream_client_error_is_not_retried(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(400, {"error": {"message": "bad stop"}}))
        with pytest.raises(LLMError, match="HTTP 400: bad stop"):
            list(_client(serve(script.handler())).stream(QUESTION))
        assert len(script.requests) == 1

    def test_error_event_mid_stream(self, serve: Callable[..., str]) -> None:
        script = Script(Reply(200, [_chunk("m", {"content": "hel"}), 'data: {"error": {"message": "out of memory"}}']))
        stream = _client(serve(script.handler())).stream(QUESTION)
        assert next(stream) == "hel"
        with pytest.raises(LLMError, match="failed mid-answer: out of memory"):
            next(stream)

    def test_api_key_from_argument_or_environment(
        self, serve: Callable[..., str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        script = Script(OK)
        base_url = serve(script.handler())
        monkeypatch.setenv("OPENAI_API_KEY", "from-env")
        _client(base_url).chat(QUESTION)
        _client(base_url, api_key="explicit").chat(QUESTION)
        monkeypatch.delenv("OPENAI_API_KEY")
        _client(base_url).chat(QUESTION)
        auth = [headers.get("Authorization") for headers, _ in script.requests]
        assert auth == ["Bearer from-env", "Bearer explicit", None]

    def test_unexpected_answer_shape(self, serve: Callable[..., str]) -> None:
        with pytest.raises(LLMError, match="unexpected answer.*OpenAI-compatible"):
            _client(serve(Script(Reply(200, {"result": "hi"})).handler())).chat(QUESTION)


@pytest.mark.unit
class TestConfiguration:
    @pytest.mark.parametrize(
        ("kwargs", "expected"),
        [
            ({"model": ""}, "model must name"),
            ({"base_url": "localhost:8000"}, "base_url must start with http"),
            ({"timeout": 0}, "timeout must be greater than 0"),
            ({"max_retries": -1}, "max_retries must be 0 or more"),
            ({"context_window": 0}, "context_window must be greater than 0"),
            ({"backoff": -1}, "backoff must be 0 or more"),
        ],
    )
    def test_invalid_settings(self, kwargs: dict[str, Any], expected: str) -> None:
        settings: dict[str, Any] = {"model": "m", **kwargs}
        with pytest.raises(ConfigError, match=expected):
            OpenAICompatibleLLM(**settings)

    def test_bad_request_fails_before_sending(self) -> None:
        llm = OpenAICompatibleLLM("m", base_url="http://127.0.0.1:9/v1")
        with pytest.raises(ConfigError, match="role"):
            llm.stream([{"role": "bot", "content": "x"}])
        with pytest.raises(ConfigError, match="unknown generation parameter"):
            llm.chat(QUESTION, temprature=0.5)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("", 0), ("abcd", 1), ("hello world!", 3), ("你好世界", 4), ("Hi 你好", 3), ("こんにちは", 5), ("a", 1)],
    )
    def test_count_tokens_estimate(self, text: str, expected: int) -> None:
        assert OpenAICompatibleLLM("m").count_tokens(text) == expected


@pytest.mark.integration
def test_generate_many_sends_a_batch_of_prompts_at_once(serve: Callable[..., str]) -> None:
    import threading

    from ragtune.llm.cached import CachedLLM

    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once

    class SlowEcho(_Handler):
        def do_POST(self) -> None:
            prompt = self.read_json()["messages"][-1]["content"]
            with lock:
                in_flight[0] += 1
                in_flight[1] = max(in_flight)
            time.sleep(0.3)  # long enough for the other requests of the batch to arrive
            with lock:
                in_flight[0] -= 1
            self.send_events([_chunk("m", {"content": f"re {prompt}"}), "data: [DONE]"])

    with _client(serve(SlowEcho)) as llm:
        replies = CachedLLM(llm).generate_many([f"p{i}" for i in range(6)], batch_size=3)
    assert replies == [f"re p{i}" for i in range(6)]
    assert in_flight[1] == 3  # each batch of 3 was in flight together, and no more than that
