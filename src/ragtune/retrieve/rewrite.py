"""Query rewriting before retrieval: HyDE, multi-query, step-back and follow-up condensation.

Every rewrite is one LLM call, bounded in tokens and seconds, parsed robustly (small models wrap lists in
code fences, break JSON, number their lines) and cached by (model, prompt) so that evaluating a data set
twice generates nothing the second time. A failed or empty rewrite never fails the search: the caller
falls back to the original query and the reason is reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError

log = logging.getLogger(__name__)

REWRITES: tuple[str, ...] = ("none", "hyde", "multi", "stepback")

HYDE_PROMPT = (
    "Write a short passage, two or three sentences, that answers the question below as a reference text "
    "would. Write in the language of the question. Reply with the passage only.\n\nQuestion: {query}"
)
MULTI_PROMPT = (
    "Write {n} different search queries that ask for the same information as the query below, using other "
    "words. Write in the language of the query. Reply with a numbered list, one query per line.\n\nQuery: {query}"
)
STEPBACK_PROMPT = (
    "Rewrite the question below as a more general question about the concept or principle behind it. "
    "Write in the language of the question. Reply with the general question only.\n\nQuestion: {query}"
)
CONDENSE_PROMPT = {
    "en": (
        "Rewrite the last question as a standalone question that can be understood without the conversation. "
        "Reply with the question only."
    ),
    "zh": "把最后一个问题改写成不需要对话上下文也能理解的完整问题。只回复改写后的问题。",
}

# Leading list markers: "1.", "2)", "(3)", "-", "*", "•", "Q1:", "Query 2:", "问题1：".
_MARKER = re.compile(
    r"^\s*(?:[-*•·]+|\(?\d{1,2}[.):、]|(?:q(?:uery)?|question|问题|查询)\s*\d{0,2}\s*[:：.)])\s*", re.IGNORECASE
)
_LABEL = re.compile(
    r"^\s*(?:passage|answer|general question|step-?back question|standalone question|question|query|"
    r"rewritten question|段落|回答|问题|改写后的问题)\s*[:：]\s*",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```[a-zA-Z]*\n?|```")
_QUOTES = "\"'`“”‘’「」《》"
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
# Longest rewritten query kept; anything longer is the model rambling, not a query.
MAX_QUERY_CHARS = 300


def _clean_line(line: str) -> str:
    line = _MARKER.sub("", line.strip())
    line = _LABEL.sub("", line)
    return line.strip().strip(_QUOTES).strip()


def _json_candidates(text: str) -> list[Any]:
    """Values decoded from the first JSON array or object in ``text``, repairing what small models break."""
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return []
    raw = text[start:].translate(_SMART_QUOTES).strip()
    attempts = [raw]
    repaired = re.sub(r",\s*([\]}])", r"\1", raw)  # trailing commas
    if "'" in repaired and '"' not in repaired:
        repaired = repaired.replace("'", '"')
    attempts.append(repaired)
    # Truncated output: close the open string and brackets.
    closed = repaired
    if closed.count('"') % 2:
        closed += '"'
    stack = []
    in_string = False
    for ch in closed:
        if ch == '"':
            in_string = not in_string
        elif not in_string and ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif not in_string and ch in "]}" and stack:
            stack.pop()
    closed = re.sub(r",\s*$", "", closed) + "".join(reversed(stack))
    attempts.append(closed)
    decoder = json.JSONDecoder()
    for attempt in attempts:
        try:
            value, _ = decoder.raw_decode(attempt)
        except json.JSONDecodeError:
            continue
        return [value]
    return []


def _strings_from_json(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings_from_json(item)]
    if isinstance(value, dict):
        for key in ("queries", "questions", "query", "question", "text", "paraphrases"):
            if key in value:
                return _strings_from_json(value[key])
        return [s for item in value.values() for s in _strings_from_json(item)]
    return []


def parse_queries(text: str, n: int, *, original: str = "") -> list[str]:
    """Up to ``n`` distinct queries from an LLM reply: a JSON list (repaired if broken), or a numbered,
    bulleted or plain list of lines. Echoes of ``original``, blanks and over-long lines are dropped."""
    if n <= 0:
        return []
    text = _FENCE.sub("\n", text or "")
    found = next((_strings_from_json(v) for v in _json_candidates(text)), [])
    lines = found or text.splitlines()
    seen = {original.strip().casefold()} if original else set()
    queries: list[str] = []
    for line in lines:
        query = _clean_line(str(line))
        key = query.casefold()
        if not query or key in seen or len(query) > MAX_QUERY_CHARS or not re.search(r"\w", query):
            continue
        seen.add(key)
        queries.append(query)
        if len(queries) == n:
            break
    return queries


def parse_passage(text: str, *, max_chars: int = 1500) -> str:
    """The passage in an LLM reply, without fences, labels or surrounding quotes, at most ``max_chars``."""
    text = _FENCE.sub("\n", text or "").strip()
    text = _LABEL.sub("", text).strip().strip(_QUOTES).strip()
    return text[:max_chars].strip()


def parse_question(text: str, *, original: str = "") -> str:
    """The first usable question line in an LLM reply ('' when there is none)."""
    found = parse_queries(text, 1, original=original)
    return found[0] if found else ""


class RewriteCache:
    """LLM replies keyed by (model, prompt). On disk (SQLite) when given a path, else in memory."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, reply TEXT NOT NULL, created REAL)"
            )

    @staticmethod
    def key(model: str, messages: Sequence[dict[str, str]], params: dict[str, Any]) -> str:
        payload = json.dumps([model, list(messages), params], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            reply = self._memory.get(key)
            if reply is None and self._conn is not None:
                row = self._conn.execute("SELECT reply FROM llm_cache WHERE key = ?", (key,)).fetchone()
                reply = row[0] if row else None
                if reply is not None:
                    self._memory[key] = reply
            if reply is None:
                self.misses += 1
            else:
                self.hits += 1
            return reply

    def put(self, key: str, reply: str) -> None:
        with self._lock:
            self._memory[key] = reply
            if self._conn is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO llm_cache (key, reply, created) VALUES (?, ?, ?)", (key, reply, time.time())
                )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@dataclass
class Rewrite:
    """What a rewrite produced: extra queries to retrieve, and/or a passage to embed instead of the query."""

    mode: str
    queries: list[str] = field(default_factory=list)
    passage: str = ""
    error: str = ""  # why the rewrite fell back to the original query, if it did


class QueryRewriter:
    """Generates rewritten queries with an LLM (any backend with ``stream``), bounded, parsed and cached."""

    def __init__(
        self, llm: Any, *, cache: RewriteCache | None = None, n_queries: int = 3, max_tokens: int = 128,
        timeout_s: float = 30.0, model_name: str | None = None,
    ) -> None:
        if n_queries <= 0:
            raise ConfigError("rewrite_queries must be greater than 0.")
        if max_tokens <= 0:
            raise ConfigError("rewrite_max_tokens must be greater than 0.")
        if timeout_s <= 0:
            raise ConfigError("rewrite_timeout_s must be greater than 0.")
        self.llm = llm
        self.cache = cache if cache is not None else RewriteCache()
        self.n_queries = n_queries
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.model_name = model_name or str(getattr(llm, "name", type(llm).__name__))

    def generate_many(
        self, prompts: Sequence[str], *, system: str | None = None, max_tokens: int | None = None,
        batch_size: int = 16,
    ) -> list[str | Exception]:
        """Cached replies to many prompts, in order; a failed prompt gives its exception, not a lost run.

        Prompts not in the cache go to the LLM ``batch_size`` at a time: batched on a backend with
        ``chat_many`` (the local model), as concurrent streamed replies (like :meth:`generate`'s) on one that
        sets ``concurrent_requests`` (an OpenAI-compatible server batches them itself), one by one otherwise.
        Each batch is cached as it finishes, so an interrupted run resumes where it stopped. Batched replies
        are bounded by ``max_tokens`` only (``rewrite_timeout_s`` applies to single replies)."""
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be greater than 0, got {batch_size}.")
        requests = [self._request(p, system, max_tokens) for p in prompts]
        replies: list[str | Exception | None] = [self.cache.get(key) for _, _, key in requests]
        todo = [i for i, reply in enumerate(replies) if reply is None]
        chat_many = getattr(self.llm, "chat_many", None)
        concurrent = bool(getattr(self.llm, "concurrent_requests", False))

        def one(i: int) -> str | Exception:
            try:
                return self._stream_reply(*requests[i])
            except Exception as exc:  # one failed reply must not end a long generation run
                return exc

        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            if chat_many is None:
                if concurrent and len(rows) > 1:
                    with ThreadPoolExecutor(max_workers=len(rows), thread_name_prefix="ragtune-llm") as pool:
                        results = list(pool.map(one, rows))
                else:
                    results = [one(i) for i in rows]
                for i, reply in zip(rows, results, strict=True):
                    replies[i] = reply
                continue
            try:
                # Every request of one call shares its parameters.
                written = chat_many([requests[i][0] for i in rows], batch_size=batch_size, **requests[rows[0]][1])
            except Exception as exc:
                for i in rows:
                    replies[i] = exc
                continue
            for i, reply in zip(rows, written, strict=True):
                self.cache.put(requests[i][2], reply)
                replies[i] = reply
        return [r if r is not None else "" for r in replies]

    def rewrite(self, query: str, mode: str) -> Rewrite:
        """Rewrite ``query`` for retrieval by ``mode`` (hyde, multi, stepback; none returns it unchanged)."""
        if mode not in REWRITES:
            raise ConfigError(f"unknown rewrite '{mode}' — choose one of: {', '.join(REWRITES)}")
        if mode == "none":
            return Rewrite(mode)
        try:
            if mode == "hyde":
                passage = parse_passage(self.generate(HYDE_PROMPT.format(query=query)))
                return Rewrite(mode, passage=passage, error="" if passage else "the LLM wrote no passage")
            if mode == "multi":
                reply = self.generate(MULTI_PROMPT.format(query=query, n=self.n_queries))
                queries = parse_queries(reply, self.n_queries, original=query)
                return Rewrite(mode, queries=queries, error="" if queries else "the LLM wrote no usable queries")
            question = parse_question(self.generate(STEPBACK_PROMPT.format(query=query)), original=query)
            return Rewrite(mode, queries=[question] if question else [],
                           error="" if question else "the LLM wrote no step-back question")
        except Exception as exc:  # a rewrite is an optimisation: retrieval goes on with the original query
            log.warning("query rewrite '%s' failed (%s); searching with the original query", mode, exc)
            return Rewrite(mode, error=f"rewrite failed: {exc}")

    def condense(self, question: str, history: Sequence[dict[str, str]], language: str = "en") -> str:
        """A standalone question for a follow-up (the question itself when there is no history)."""
        turns = [m for m in history if m.get("role") in ("user", "assistant") and m.get("content")]
        if not turns:
            return question
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in turns[-6:])
        system = CONDENSE_PROMPT.get(language, CONDENSE_PROMPT["en"])
        try:
            reply = self.generate(f"{transcript}\nuser: {question}", system=system, max_tokens=64)
        except Exception as exc:  # condensation is an optimisation; the caller still retrieves
            log.warning("follow-up condensation failed (%s); using the raw conversation", exc)
            reply = ""
        return parse_question(reply.split("\n", 1)[0] if reply else "")

    def generate(self, prompt: str, *, system: str | None = None, max_tokens: int | None = None) -> str:
        """One bounded, cached LLM reply to ``prompt``. A reply cut off by the time limit is used but not cached."""
        messages, params, key = self._request(prompt, system, max_tokens)
        cached = self.cache.get(key)
        return cached if cached is not None else self._stream_reply(messages, params, key)

    def _request(
        self, prompt: str, system: str | None, max_tokens: int | None
    ) -> tuple[list[dict[str, str]], dict[str, Any], str]:
        """(messages, generation parameters, cache key) of one prompt."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        params: dict[str, Any] = {"max_tokens": max_tokens or self.max_tokens, "temperature": 0.0}
        return messages, params, RewriteCache.key(self.model_name, messages, params)

    def _stream_reply(self, messages: list[dict[str, str]], params: dict[str, Any], key: str) -> str:
        """Stream a reply within ``timeout_s``; cache it unless the time limit cut it off."""
        deadline = time.monotonic() + self.timeout_s
        pieces: list[str] = []
        timed_out = False
        stream = self.llm.stream(messages, **params)
        try:
            for piece in stream:
                pieces.append(piece)
                if time.monotonic() > deadline:
                    timed_out = True
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        reply = "".join(pieces)
        if timed_out:
            log.warning("query rewrite stopped after %.0f s (rewrite_timeout_s); using what it wrote", self.timeout_s)
        else:
            self.cache.put(key, reply)
        return reply
