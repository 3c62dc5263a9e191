"""A cached, bounded LLM client: replies keyed by (model, prompt, parameters), kept on disk, batched when the
backend can batch. Query rewriting, training-data generation and LLM judges all ask their model through it, so
that running the same data twice generates nothing the second time and an interrupted run resumes."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError

log = logging.getLogger(__name__)


class LLMCache:
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


class CachedLLM:
    """Asks an LLM (any backend with ``stream``) through a reply cache, bounded in tokens and seconds."""

    def __init__(
        self, llm: Any, *, cache: LLMCache | None = None, max_tokens: int = 128, timeout_s: float = 30.0,
        model_name: str | None = None,
    ) -> None:
        if max_tokens <= 0:
            raise ConfigError("rewrite_max_tokens must be greater than 0.")
        if timeout_s <= 0:
            raise ConfigError("rewrite_timeout_s must be greater than 0.")
        self.llm = llm
        self.cache = cache if cache is not None else LLMCache()
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.model_name = model_name or str(getattr(llm, "name", type(llm).__name__))

    def generate_many(
        self, prompts: Sequence[str], *, system: str | None = None, max_tokens: int | None = None,
        batch_size: int = 16, json_schema: dict[str, Any] | None = None,
    ) -> list[str | Exception]:
        """Cached replies to many prompts, in order; a failed prompt gives its exception, not a lost run.

        Prompts not in the cache go to the LLM ``batch_size`` at a time: batched on a backend with
        ``chat_many`` (the local model), as concurrent streamed replies (like :meth:`generate`'s) on one that
        sets ``concurrent_requests`` (an OpenAI-compatible server batches them itself), one by one otherwise.
        Each batch is cached as it finishes, so an interrupted run resumes where it stopped. Batched replies
        are bounded by ``max_tokens`` only (``rewrite_timeout_s`` applies to single replies)."""
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be greater than 0, got {batch_size}.")
        requests = [self._request(p, system, max_tokens, json_schema) for p in prompts]
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

    def generate(
        self, prompt: str, *, system: str | None = None, max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> str:
        """One bounded, cached LLM reply to ``prompt``. A reply cut off by the time limit is used but not cached.
        ``json_schema`` constrains the reply on backends that can (see ``GenerationParams``)."""
        messages, params, key = self._request(prompt, system, max_tokens, json_schema)
        cached = self.cache.get(key)
        return cached if cached is not None else self._stream_reply(messages, params, key)

    def _request(
        self, prompt: str, system: str | None, max_tokens: int | None, json_schema: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, str]], dict[str, Any], str]:
        """(messages, generation parameters, cache key) of one prompt."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        params: dict[str, Any] = {"max_tokens": max_tokens or self.max_tokens, "temperature": 0.0}
        if json_schema is not None:  # only when given, so the cache keys of plain prompts stay as they were
            params["json_schema"] = json_schema
        return messages, params, LLMCache.key(self.model_name, messages, params)

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
            log.warning("LLM reply stopped after %.0f s (rewrite_timeout_s); using what it wrote", self.timeout_s)
        else:
            self.cache.put(key, reply)
        return reply
