"""The LLM protocol every generation backend follows, with the message and parameter checks they share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from ragtune.errors import ConfigError

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


class Message(TypedDict):
    """One chat turn, in the OpenAI shape every backend accepts."""

    role: Role
    content: str


@runtime_checkable
class LLM(Protocol):
    """A chat model: answers a conversation whole (``chat``) or piece by piece (``stream``).

    Every backend accepts the parameters of :class:`GenerationParams` (``max_tokens``, ``temperature``,
    ``top_p``, ``stop``, ``seed``); temperature 0, the default, is greedy and deterministic.
    """

    name: str
    context_window: int

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str: ...

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class GenerationParams:
    """The generation parameters every backend understands, validated once.

    ``repetition_penalty`` (> 1 discourages repeating tokens already generated) and ``no_repeat_ngram_size``
    (never generate the same n tokens twice) keep small models from looping. In-process backends apply both
    to the generated tokens only, so copying a phrase from the prompt's sources is never penalised; llama.cpp
    applies its own repeat penalty (and no n-gram blocking); OpenAI-compatible servers are sent both when set
    (vLLM, SGLang and llama.cpp's server read ``repetition_penalty``; OpenAI's own API knows neither).
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: Constrain the reply to this JSON schema (OpenAI-compatible servers; other backends refuse it).
    json_schema: Mapping[str, Any] | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    @classmethod
    def from_kwargs(cls, params: Mapping[str, Any], *, json_replies: bool = False) -> GenerationParams:
        """Check ``params`` (the ``**params`` of chat/stream); unknown names are errors, not silently ignored.
        ``json_replies``: the backend can constrain replies to ``json_schema`` (others refuse one)."""
        known = ("max_tokens", "temperature", "top_p", "stop", "seed", "json_schema", "repetition_penalty",
                 "no_repeat_ngram_size")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"unknown generation parameter(s) {', '.join(unknown)} — use {', '.join(known)}")
        max_tokens = params.get("max_tokens", cls.max_tokens)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            raise ConfigError(f"max_tokens must be an integer greater than 0, got {max_tokens!r}.")
        temperature = params.get("temperature", cls.temperature)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}.")
        top_p = params.get("top_p", cls.top_p)
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be a number in (0, 1], got {top_p!r}.")
        stop = params.get("stop")
        if stop is None:
            stop = []
        # A bare string would otherwise be taken as a list of one-character stop strings.
        if isinstance(stop, str) or not isinstance(stop, (list, tuple)):
            raise ConfigError(f"stop must be a list of strings (e.g. ['\\n\\n']), got {stop!r}.")
        if not all(isinstance(s, str) and s for s in stop):
            raise ConfigError(f"stop strings must be non-empty strings, got {list(stop)!r}.")
        seed = params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed must be an integer or None, got {seed!r}.")
        json_schema = params.get("json_schema")
        if json_schema is not None and not isinstance(json_schema, Mapping):
            raise ConfigError(f"json_schema must be a JSON schema (a dict), got {json_schema!r}.")
        if json_schema is not None and not json_replies:
            raise ConfigError("this LLM backend cannot constrain replies to a JSON schema — use an OpenAI-compatible "
                              "server (vLLM, SGLang, llama.cpp server, Ollama), or leave json_schema out.")
        penalty = params.get("repetition_penalty", cls.repetition_penalty)
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or penalty <= 0:
            raise ConfigError(f"repetition_penalty must be a number > 0 (1 = off), got {penalty!r}.")
        ngram = params.get("no_repeat_ngram_size", cls.no_repeat_ngram_size)
        if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 0:
            raise ConfigError(f"no_repeat_ngram_size must be an integer >= 0 (0 = off), got {ngram!r}.")
        return cls(int(max_tokens), float(temperature), float(top_p), tuple(stop), seed, json_schema, float(penalty),
                   ngram)


def validate_messages(messages: Any) -> list[Message]:
    """Check a conversation before any model work, so a malformed request fails fast and precisely."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConfigError(f"messages must be a non-empty list of {{'role', 'content'}} dicts, got {messages!r}.")
    checked: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ConfigError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}.")
        missing = [key for key in ("role", "content") if key not in message]
        if missing:
            raise ConfigError(f"messages[{i}] lacks {' and '.join(repr(k) for k in missing)}.")
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            raise ConfigError(f"messages[{i}] has unsupported key(s) {', '.join(extra)}; only 'role' and 'content'.")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ConfigError(f"messages[{i}].role is {role!r}; it must be one of {', '.join(ROLES)}.")
        if not isinstance(content, str):
            raise ConfigError(f"messages[{i}].content must be a string, got {type(content).__name__}.")
        checked.append({"role": role, "content": content})
    return checked


def truncate_at_stop(pieces: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """Pass text pieces through, ending right before the first stop string.

    A piece may end with the beginning of a stop string that the next piece completes, so such a
    tail is held back until it either completes a stop string or can no longer start one.
    """
    if not stop:
        yield from pieces
        return
    pending = ""
    for piece in pieces:
        pending += piece
        hits = [i for i in (pending.find(s) for s in stop) if i >= 0]
        if hits:
            if min(hits) > 0:
                yield pending[: min(hits)]
            return
        ready = len(pending) - _stop_prefix_length(pending, stop)
        if ready > 0:
            yield pending[:ready]
            pending = pending[ready:]
    if pending:
        yield pending


def _stop_prefix_length(text: str, stop: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop string."""
    for size in range(min(len(text), max(len(s) for s in stop) - 1), 0, -1):
        if any(s.startswith(text[-size:]) for s in stop):
            return size
    return 0
