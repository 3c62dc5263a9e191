"""Any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp server, OpenAI) over plain httpx."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from ragtune.errors import ConfigError, LLMError
from ragtune.llm.base import GenerationParams, validate_messages
from ragtune.text import HAN, HANGUL, KANA

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
_MAX_DELAY_S = 30.0
_START_HINT = (
    "is the server running? start it with e.g. 'vllm serve MODEL --port 8000', "
    "'llama-server -m MODEL.gguf --port 8000' or 'ollama serve' (then base_url='http://127.0.0.1:11434/v1')"
)
# Kana, CJK ideographs and Hangul: subword vocabularies spend about one token on each such character.
_CJK = re.compile(f"[{KANA}{HAN}{HANGUL}]")


class OpenAICompatibleLLM:
    """Chat with a model behind ``{base_url}/chat/completions``, retrying transient failures.

    Connection errors, timeouts, 429 and 5xx are retried ``max_retries`` times with exponential
    backoff (``backoff`` seconds, doubling, with jitter; a server's Retry-After is honoured); other 4xx
    fail at once. A stream is retried only before its first piece: after that a retry would repeat text.
    """

    #: Its httpx client is thread-safe, and servers (vLLM, SGLang, llama.cpp) batch concurrent requests, so
    #: the data commands send a batch of prompts at once.
    concurrent_requests = True
    #: Replies can be constrained to a JSON schema (``json_schema=``, sent as ``response_format``).
    json_replies = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int = 3,
        context_window: int = 8192,
        backoff: float = 0.5,
    ) -> None:
        if not model:
            raise ConfigError("model must name the model the server serves (e.g. 'Qwen/Qwen2.5-7B-Instruct').")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}.")
        if timeout <= 0:
            raise ConfigError(f"timeout must be greater than 0 seconds, got {timeout}.")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, got {max_retries}.")
        if context_window <= 0:
            raise ConfigError(f"context_window must be greater than 0, got {context_window}.")
        if backoff < 0:
            raise ConfigError(f"backoff must be 0 or more seconds, got {backoff}.")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.context_window = context_window
        self.backoff = backoff
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=self.timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_tokens(self, text: str) -> int:
        """A rough estimate, since the server's tokenizer is not at hand: one token per CJK character
        and one per four other characters (close for English with BPE vocabularies; budget a margin)."""
        cjk = len(_CJK.findall(text))
        return cjk + math.ceil((len(text) - cjk) / 4)

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        body = self._body(messages, params, stream=False)
        response = self._send(lambda: self._client.post(self.url, json=body))
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(
                f"{self.url} (model '{self.name}'): unexpected answer {response.text[:300]!r} — "
                "is this an OpenAI-compatible server?"
            ) from None
        return str(content or "")

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        # Built here, not in the generator, so a bad request fails at the call rather than at first next().
        body = self._body(messages, params, stream=True)
        return self._stream(body)

    def _body(self, messages: list[dict[str, str]], params: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        settings = GenerationParams.from_kwargs(params, json_replies=self.json_replies)
        body: dict[str, Any] = {
            "model": self.name,
            "messages": validate_messages(messages),
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stream": stream,
        }
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.seed is not None:
            body["seed"] = settings.seed
        if settings.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": dict(settings.json_schema)}}
        # Not part of OpenAI's API: sent only when set (vLLM, SGLang and llama.cpp's server read repetition_penalty).
        if settings.repetition_penalty != 1.0:
            body["repetition_penalty"] = settings.repetition_penalty
        if settings.no_repeat_ngram_size:
            body["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
        return body

    def _send(self, request: Any) -> httpx.Response:
        """``request()`` until it answers 2xx, a non-retryable error, or the retries run out."""
        attempt = 1
        while True:
            retry_after = None
            try:
                response = request()
            except httpx.TransportError as exc:
                failure = self._transport_error(exc, attempt)
            else:
                if response.status_code < 400:
                    return response
                failure = self._http_error(response, attempt)
                if not _retryable(response.status_code):
                    raise failure
                retry_after = _retry_after(response)
            self._wait_or_raise(failure, attempt, retry_after)
            attempt += 1

    def _stream(self, body: dict[str, Any]) -> Iterator[str]:
        attempt = 1
        while True:
            started = False
            retry_after = None
            try:
                with self._client.stream("POST", self.url, json=body) as response:
                    if response.status_code < 400:
                        for piece in _sse_pieces(response.iter_lines(), self._where()):
                            started = True
                            yield piece
                        return
                    response.read()
                    failure = self._http_error(response, attempt)
                    if not _retryable(response.status_code):
                        raise failure
                    retry_after = _retry_after(response)
            except httpx.TransportError as exc:
                if started:
                    raise LLMError(
                        f"{self._where()}: the answer broke off ({type(exc).__name__}: {exc}) — retry the request"
                    ) from exc
                failure = self._transport_error(exc, attempt)
            self._wait_or_raise(failure, attempt, retry_after)
            attempt += 1

    def _wait_or_raise(self, failure: LLMError, attempt: int, retry_after: float | None) -> None:
        if attempt > self.max_retries:
            raise failure
        delay = min(_MAX_DELAY_S, self.backoff * 2 ** (attempt - 1))
        # Jitter spreads out clients that failed together, so they do not all retry in the same instant.
        delay = delay / 2 + random.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, _MAX_DELAY_S))
        log.warning("%s; retrying in %.2f s (attempt %d of %d)", failure, delay, attempt + 1, self.max_retries + 1)
        time.sleep(delay)

    def _where(self) -> str:
        return f"{self.url} (model '{self.name}')"

    def _attempts(self, attempt: int) -> str:
        return f" after {attempt} attempts" if attempt > 1 else ""

    def _http_error(self, response: httpx.Response, attempt: int) -> LLMError:
        status = response.status_code
        if status in (401, 403):
            hint = "check the API key (api_key= or env OPENAI_API_KEY)"
        elif status == 404:
            hint = f"check base_url (it usually ends in /v1) and that the server serves the model '{self.name}'"
        elif status == 429:
            hint = "the server is rate-limiting: retry later or send fewer requests"
        elif status >= 500:
            hint = "the server failed: see its log"
        else:
            hint = "the server rejected the request: check the messages and parameters"
        return LLMError(
            f"{self._where()}: HTTP {status}{self._attempts(attempt)}: {_server_message(response)} — {hint}"
        )

    def _transport_error(self, exc: httpx.TransportError, attempt: int) -> LLMError:
        if isinstance(exc, httpx.TimeoutException):
            return LLMError(
                f"{self._where()}: no answer within the timeout of {self.timeout:g} s{self._attempts(attempt)} "
                f"({type(exc).__name__}) — the server may be busy or still loading the model; raise timeout="
            )
        return LLMError(f"{self._where()}: cannot connect{self._attempts(attempt)} ({exc}) — {_START_HINT}")


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:  # absent, or an HTTP date, which servers rarely send for this
        return None


def _server_message(response: httpx.Response) -> str:
    """The error text from an OpenAI-style ``{"error": {"message": ...}}`` body, or FastAPI's ``detail``."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    message: Any = data
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error
        elif error:
            message = error
        elif "detail" in data:
            message = data["detail"]
        elif "message" in data:
            message = data["message"]
    return str(message)[:500]


def _sse_pieces(lines: Iterable[str], where: str) -> Iterator[str]:
    """The text deltas of an OpenAI server-sent-event stream, up to ``data: [DONE]``."""
    for line in lines:
        # Blank separators, ": keep-alive" comments and event:/id: fields carry no text.
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise LLMError(
                f"{where}: malformed stream event {data[:200]!r} — is this an OpenAI-compatible server?"
            ) from None
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise LLMError(f"{where}: the server failed mid-answer: {message}")
        # A closing usage-only chunk has no choices.
        choices = chunk.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices and isinstance(choices[0], dict) else {}
        content = delta.get("content")
        if content:
            yield content
