"""Worked examples for the answering model: rated answers shown before a question like theirs (few-shot, as in
ARM-RAG's reuse of successful reasoning).

A demonstration is a question, the sources its answer cites (renumbered from [1]) and the answer with its
``[n]`` citations. ``ragtune loop`` writes sets of them from 👍 answers and promotes a set only when the gate
finds answers improve; the ``demonstrations`` setting names the promoted file. At answer time
:class:`DemonstratingLLM` looks up the closest demonstrations of the question (BM25 over their questions, with
ragtune's analyzer, so Chinese works) and puts them before it as earlier turns of the conversation, in the very
format of the answer prompt — only for the answer prompt; rewrites and judges that ask the same model are left
alone.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.jsonl import read_jsonl, write_jsonl
from ragtune.llm.base import LLM
from ragtune.store.bm25 import BM25Index
from ragtune.store.text import tokenize
from ragtune.text import detect_language

log = logging.getLogger(__name__)

#: Share of a question's terms a demonstration's question must share to be shown with it.
MIN_OVERLAP = 0.3
#: Characters of each source a demonstration shows: enough to see the cited fact, little of the context window.
SOURCE_CHARS = 400


@dataclass(frozen=True)
class Demonstration:
    """A rated answer kept as a worked example: the question, the sources its answer cites and the answer."""

    question: str
    sources: list[str]
    answer: str
    language: str = "en"
    id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_demonstrations(path: str | Path) -> list[Demonstration]:
    """The demonstrations of a JSONL file (one per line, the fields of :class:`Demonstration`)."""
    demonstrations = []
    for number, row in read_jsonl(path, what="demonstrations"):
        try:
            demonstrations.append(Demonstration(
                question=str(row["question"]), sources=[str(s) for s in row.get("sources") or []],
                answer=str(row["answer"]), language=str(row.get("language") or detect_language(row["question"])),
                id=str(row.get("id") or number), extra=dict(row.get("extra") or {}),
            ))
        except KeyError as exc:
            raise ConfigError(f"{path} line {number}: a demonstration needs 'question' and 'answer' (missing {exc})"
                              " — write it with 'ragtune loop run'") from None
    return demonstrations


def write_demonstrations(path: str | Path, demonstrations: Sequence[Demonstration]) -> int:
    return write_jsonl(path, demonstrations)


class DemonstrationIndex:
    """Finds the demonstrations whose questions are closest to a question."""

    def __init__(self, demonstrations: Sequence[Demonstration]) -> None:
        self.demonstrations = list(demonstrations)
        self._terms = [set(tokenize(d.question)) for d in self.demonstrations]
        self._bm25 = BM25Index()
        if self.demonstrations:
            self._bm25.add(list(range(len(self.demonstrations))), [tokenize(d.question) for d in self.demonstrations])

    def __len__(self) -> int:
        return len(self.demonstrations)

    def select(self, question: str, k: int, *, min_overlap: float = MIN_OVERLAP) -> list[Demonstration]:
        """Up to ``k`` demonstrations for ``question``, closest first: BM25 order, each sharing at least
        ``min_overlap`` of the question's terms; never the question itself (its own rated answer)."""
        terms = tokenize(question)
        wanted = set(terms)
        if not wanted or not self.demonstrations:
            return []
        ids, _ = self._bm25.search(terms, max(k * 4, 8))
        chosen: list[Demonstration] = []
        for i in ids.tolist():
            own = self._terms[i]
            if own == wanted or len(own & wanted) / len(wanted) < min_overlap:
                continue
            chosen.append(self.demonstrations[i])
            if len(chosen) == k:
                break
        return chosen


def demonstration_turns(demonstrations: Sequence[Demonstration], user_templates: dict[str, str]
                        ) -> list[dict[str, str]]:
    """The demonstrations as earlier (user, assistant) turns, each user turn in the answer prompt's format."""
    turns: list[dict[str, str]] = []
    for demo in demonstrations:
        lang = demo.language if demo.language in user_templates else "en"
        sources = "\n\n".join(f"[{n}] {_clip(text)}" for n, text in enumerate(demo.sources, 1))
        turns.append({"role": "user", "content": user_templates[lang].format(sources=sources, question=demo.question)})
        turns.append({"role": "assistant", "content": demo.answer})
    return turns


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SOURCE_CHARS else text[: SOURCE_CHARS - 1] + "…"


class DemonstratingLLM:
    """An LLM that shows the answer prompt its closest demonstrations first; every other prompt passes through.

    The answer prompt is recognised by its system message (one of ``answer_systems``); its last user turn holds
    the question and its sources in one of ``user_templates`` (see :func:`question_of`).
    """

    def __init__(self, llm: LLM, index: DemonstrationIndex, *, k: int, answer_systems: Sequence[str],
                 user_templates: dict[str, str]) -> None:
        self.llm = llm
        self.index = index
        self.k = k
        self.answer_systems = set(answer_systems)
        self.user_templates = user_templates
        self.name = llm.name
        self.context_window = llm.context_window

    def count_tokens(self, text: str) -> int:
        return self.llm.count_tokens(text)

    def with_demonstrations(self, messages: list[dict[str, str]], question: str) -> list[dict[str, str]]:
        """``messages`` with the demonstrations for ``question`` inserted after the system message."""
        if not messages or messages[0].get("role") != "system" or messages[0].get("content") not in self.answer_systems:
            return messages
        chosen = self.index.select(question, self.k)
        if not chosen:
            return messages
        log.debug("showing %d demonstrations before %r", len(chosen), question[:80])
        return [messages[0], *demonstration_turns(chosen, self.user_templates), *messages[1:]]

    def _prepared(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        return self.with_demonstrations(messages, question_of(last, self.user_templates.values()))

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        return self.llm.chat(self._prepared(messages), **params)

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        return self.llm.stream(self._prepared(messages), **params)


def question_of(user_turn: str, templates: Iterable[str]) -> str:
    """The question inside an answer prompt's user turn, read back through the template that wrote it (its
    ``{question}`` and ``{sources}`` fields); the whole turn when no template matches."""
    for template in templates:
        match = _template_pattern(template.strip()).fullmatch(user_turn.strip())
        if match:
            return match.group("question").strip()
    return user_turn


@functools.lru_cache(maxsize=16)
def _template_pattern(template: str) -> re.Pattern[str]:
    """A template as a pattern: its text literally, ``{question}`` captured (the same text where it recurs),
    any other field (the sources) as anything."""
    pattern, seen, end = "", False, 0
    for field_match in _FIELD.finditer(template):
        pattern += re.escape(template[end : field_match.start()])
        if field_match.group(1) == "question":
            pattern += r"(?P=question)" if seen else r"(?P<question>.+?)"
            seen = True
        else:
            pattern += r".*?"
        end = field_match.end()
    return re.compile(pattern + re.escape(template[end:]), re.S)


_FIELD = re.compile(r"\{(\w+)\}")
