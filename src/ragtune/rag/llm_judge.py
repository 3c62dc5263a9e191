"""An LLM claim judge: a model decides which claims the contexts support, at temperature 0, in JSON (constrained
by a schema where the server can), parsed robustly and cached per prompt; what it cannot parse, the default
judge decides, so a run never fails or gives NaN on a bad reply."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from ragtune.errors import LLMError
from ragtune.llm.cached import CachedLLM
from ragtune.rag.claims import ClaimCheck, ClaimJudge, default_judge

log = logging.getLogger(__name__)

CHECK_PROMPT = (
    "Check each numbered statement against the numbered sources. A statement is supported only when the sources "
    "state it; a number, name, date or place that the sources do not state about the same subject makes it "
    "unsupported, and so does anything added that the sources do not say.\n\n"
    "{question}Sources:\n{sources}\n\nStatements:\n{statements}\n\n"
    'Reply with JSON only: {{"verdicts": [{{"statement": 1, "supported": true, "source": 1, "reason": ""}}, ...]}} '
    "with one verdict per statement; source is the number of the source that supports it (null if none) and "
    "reason says briefly what is not supported (empty when supported)."
)
QUESTIONS_PROMPT = (
    "Write {n} different questions that the answer below responds to, and say whether the answer is noncommittal "
    "(evasive, vague or a refusal such as \"I don't know\").\n\nAnswer: {answer}\n\n"
    'Reply with JSON only: {{"questions": ["...", ...], "noncommittal": false}}'
)
CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdicts": {"type": "array", "items": {
        "type": "object",
        "properties": {"statement": {"type": "integer"}, "supported": {"type": "boolean"},
                       "source": {"type": ["integer", "null"]}, "reason": {"type": "string"}},
        "required": ["statement", "supported", "source", "reason"],
    }}},
    "required": ["verdicts"],
}
QUESTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"questions": {"type": "array", "items": {"type": "string"}},
                   "noncommittal": {"type": "boolean"}},
    "required": ["questions", "noncommittal"],
}
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_TRUE = {"true", "yes", "1", "supported", "y", "是", "支持"}
_FALSE = {"false", "no", "0", "unsupported", "not supported", "n", "否", "不支持"}


def parse_json_reply(text: str) -> Any:
    """The first JSON object or list in a model's reply, tolerating code fences, text around it, trailing
    commas and Python literals (True/False/None, single quotes); None when there is none."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for variant in (candidate, _pythonish(candidate)):
            for start in (i for i, ch in enumerate(variant) if ch in "{["):
                try:
                    value, _ = decoder.raw_decode(_TRAILING_COMMA.sub(r"\1", variant[start:]))
                except json.JSONDecodeError:
                    continue
                return value
    return None


def _pythonish(text: str) -> str:
    text = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", text)))
    return re.sub(r"'([^'\\]*)'", r'"\1"', text)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else None
    return None


def _as_index(value: Any, size: int) -> int | None:
    """A 1-based number from the reply as a 0-based index, when it names one of ``size`` items."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lstrip("[").rstrip("]").isdigit():
        value = int(value.strip().lstrip("[").rstrip("]"))
    if isinstance(value, (int, float)) and 1 <= int(value) <= size:
        return int(value) - 1
    return None


class LLMJudge:
    """Implements ``ClaimJudge`` with any ragtune LLM behind a :class:`CachedLLM`: one prompt per (claims,
    contexts), temperature 0, the reply constrained to a JSON schema where the backend can and parsed
    robustly; claims the reply leaves undecided fall back to ``fallback`` (the default judge)."""

    def __init__(
        self, client: CachedLLM, *, fallback: ClaimJudge | None = None, max_claims: int = 20,
        max_context_chars: int = 4000, max_tokens: int = 512,
    ) -> None:
        self.client = client
        self.fallback = fallback or default_judge()
        self.max_claims = max_claims
        self.max_context_chars = max_context_chars
        self.max_tokens = max_tokens
        self.name = f"llm:{client.model_name}"
        self._constrain = bool(getattr(client.llm, "json_replies", False))
        # A server batches concurrent requests: score several rows at once.
        self.concurrency = 8 if getattr(client.llm, "concurrent_requests", False) else 1

    def check(
        self, claims: Sequence[str], contexts: Sequence[str], *, question: str | None = None,
        language: str | None = None,
    ) -> list[ClaimCheck]:
        out: list[ClaimCheck] = []
        for start in range(0, len(claims), self.max_claims):
            out.extend(self._check_batch(list(claims[start : start + self.max_claims]), contexts, question,
                                         language))
        return out

    def _check_batch(
        self, claims: list[str], contexts: Sequence[str], question: str | None, language: str | None
    ) -> list[ClaimCheck]:
        prompt = CHECK_PROMPT.format(
            question=f"Question: {question}\n\n" if question else "",
            sources="\n\n".join(f"[{i}] {c[: self.max_context_chars]}" for i, c in enumerate(contexts, 1)),
            statements="\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1)),
        )
        verdicts = self._verdicts(self._ask(prompt, CHECK_SCHEMA), claims, len(contexts))
        undecided = [i for i in range(len(claims)) if i not in verdicts]
        if undecided:
            log.info("LLM judge left %d of %d claims undecided; the default judge decides them",
                     len(undecided), len(claims))
            fallback = self.fallback.check([claims[i] for i in undecided], contexts, question=question,
                                           language=language)
            for i, check in zip(undecided, fallback, strict=True):
                note = "decided by the default judge: the LLM's reply left it out"
                verdicts[i] = dataclasses.replace(check, reason=f"{check.reason} ({note})" if check.reason else "")
        return [verdicts[i] for i in range(len(claims))]

    def _verdicts(self, reply: str, claims: Sequence[str], n_contexts: int) -> dict[int, ClaimCheck]:
        """Verdicts by claim index from a reply: {"verdicts": [...]} or a bare list; items numbered or in order."""
        data = parse_json_reply(reply)
        items = data.get("verdicts", data.get("statements")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            return {}
        n_claims = len(claims)
        found: dict[int, ClaimCheck] = {}
        for position, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            index = _as_index(item.get("statement", item.get("id")), n_claims)
            index = position if index is None and position < n_claims else index
            supported = _as_bool(item.get("supported", item.get("verdict")))
            if index is None or supported is None or index in found:
                continue
            source = _as_index(item.get("source"), n_contexts) if supported else None
            reason = "" if supported else str(item.get("reason") or "the judge found no support in the sources")
            found[index] = ClaimCheck(claim=claims[index], supported=supported, score=1.0 if supported else 0.0,
                                      source=source, reason=reason)
        return found

    def questions_for(self, answer: str, *, language: str | None = None, n: int = 3) -> tuple[list[str], bool]:
        """Questions the answer responds to and whether it is noncommittal (RAGAS's answer-relevancy step);
        ([], False) when the reply cannot be parsed, so the caller falls back to direct similarity."""
        data = parse_json_reply(self._ask(QUESTIONS_PROMPT.format(n=n, answer=answer), QUESTIONS_SCHEMA))
        if not isinstance(data, dict):
            return [], False
        questions = [str(q).strip() for q in data.get("questions") or [] if str(q).strip()][:n]
        return questions, bool(_as_bool(data.get("noncommittal")))

    def _ask(self, prompt: str, schema: dict[str, Any]) -> str:
        if self._constrain:
            try:
                return self.client.generate(prompt, max_tokens=self.max_tokens, json_schema=schema)
            except LLMError as exc:
                if "HTTP 400" not in str(exc):
                    raise
                # A server without structured output rejects response_format: ask plainly from now on.
                log.warning("the judge's server refused a JSON schema (%s); parsing plain replies instead", exc)
                self._constrain = False
        return self.client.generate(prompt, max_tokens=self.max_tokens)
