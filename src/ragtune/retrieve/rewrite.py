"""Query rewriting before retrieval: HyDE, multi-query, step-back and follow-up condensation.

Every rewrite is one LLM call, bounded in tokens and seconds, parsed robustly (small models wrap lists in
code fences, break JSON, number their lines) and cached by (model, prompt) so that evaluating a data set
twice generates nothing the second time. A failed or empty rewrite never fails the search: the caller
falls back to the original query and the reason is reported.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragtune.errors import ConfigError
from ragtune.llm.cached import CachedLLM

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


@dataclass
class Rewrite:
    """What a rewrite produced: extra queries to retrieve, and/or a passage to embed instead of the query."""

    mode: str
    queries: list[str] = field(default_factory=list)
    passage: str = ""
    error: str = ""  # why the rewrite fell back to the original query, if it did


class QueryRewriter:
    """Rewrites queries with an LLM through a :class:`CachedLLM` (bounded, parsed and cached)."""

    def __init__(self, client: CachedLLM, *, n_queries: int = 3) -> None:
        if n_queries <= 0:
            raise ConfigError("rewrite_queries must be greater than 0.")
        self.client = client
        self.n_queries = n_queries

    @property
    def llm(self) -> Any:
        """The model the rewrites come from."""
        return self.client.llm

    def rewrite(self, query: str, mode: str) -> Rewrite:
        """Rewrite ``query`` for retrieval by ``mode`` (hyde, multi, stepback; none returns it unchanged)."""
        if mode not in REWRITES:
            raise ConfigError(f"unknown rewrite '{mode}' — choose one of: {', '.join(REWRITES)}")
        if mode == "none":
            return Rewrite(mode)
        try:
            if mode == "hyde":
                passage = parse_passage(self.client.generate(HYDE_PROMPT.format(query=query)))
                return Rewrite(mode, passage=passage, error="" if passage else "the LLM wrote no passage")
            if mode == "multi":
                reply = self.client.generate(MULTI_PROMPT.format(query=query, n=self.n_queries))
                queries = parse_queries(reply, self.n_queries, original=query)
                return Rewrite(mode, queries=queries, error="" if queries else "the LLM wrote no usable queries")
            question = parse_question(self.client.generate(STEPBACK_PROMPT.format(query=query)), original=query)
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
            reply = self.client.generate(f"{transcript}\nuser: {question}", system=system, max_tokens=64)
        except Exception as exc:  # condensation is an optimisation; the caller still retrieves
            log.warning("follow-up condensation failed (%s); using the raw conversation", exc)
            reply = ""
        return parse_question(reply.split("\n", 1)[0] if reply else "")
