"""The answer pipeline: condense → retrieve → de-duplicate → gate → pack → prompt → generate → verify."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragtune.errors import ConfigError
from ragtune.llm.base import LLM
from ragtune.llm.cached import CachedLLM
from ragtune.rag.citations import support, verify_citations
from ragtune.rag.context import dedupe, pack
from ragtune.rag.prompts import REFUSAL, PromptTemplates, answer_messages, is_model_refusal
from ragtune.retrieve.retriever import HybridRetriever
from ragtune.retrieve.rewrite import QueryRewriter
from ragtune.text import detect_language
from ragtune.timing import elapsed_ms
from ragtune.types import Answer, Hit

log = logging.getLogger(__name__)

# Per embedder: the dense cosine of the best hit below which a question counts as outside the knowledge
# base, and the languages whose scores mean anything (MiniLM scores every Chinese text about alike).
# Calibrated on SciFact by bench/refusal_calibration.py.
REFUSAL_GATES: dict[str, tuple[float, frozenset[str]]] = {
    "all-MiniLM-L6-v2": (0.43, frozenset({"en"})),
    "multilingual-e5-small": (0.80, frozenset({"en", "zh"})),
}
# Share of the question's terms that the best hit must contain to count as a lexical match.
LEXICAL_GATE = 0.5


@dataclass
class AnswerEvent:
    """A streamed piece of an answer: generated text as it arrives, then the final verified answer."""

    type: Literal["token", "answer"]
    text: str = ""
    answer: Answer | None = None


class RagPipeline:
    """Answers questions from a retriever and an LLM with numbered, verified citations — or refuses."""

    def __init__(
        self, retriever: HybridRetriever, llm: LLM, *, context_hits: int = 3, candidates: int = 20,
        max_new_tokens: int = 128, context_tokens: int | None = None, refusal_threshold: float | None = None,
        min_citation_support: float = 0.5, templates: PromptTemplates | None = None,
    ) -> None:
        if context_hits <= 0:
            raise ConfigError("context_hits must be greater than 0.")
        if max_new_tokens <= 0:
            raise ConfigError("max_new_tokens must be greater than 0.")
        self.retriever = retriever
        self.llm = llm
        # Follow-up condensation shares the retriever's rewriter (and its cache) when it uses the same model.
        shared = retriever.rewriter
        self.rewriter = shared if shared is not None and shared.llm is llm else QueryRewriter(CachedLLM(llm))
        self.context_hits = context_hits
        self.candidates = max(candidates, context_hits)
        self.max_new_tokens = max_new_tokens
        # Leave room for the instructions, the question and the answer itself.
        room = llm.context_window - max_new_tokens - 256
        self.context_tokens = min(context_tokens or 2048, room)
        if self.context_tokens <= 64:
            raise ConfigError(f"the model's context window ({llm.context_window} tokens) leaves no room for sources "
                              f"after max_new_tokens={max_new_tokens} — lower max_new_tokens")
        threshold, languages = REFUSAL_GATES.get(retriever.embedder.name, (0.0, frozenset({"en", "zh"})))
        self.refusal_threshold = refusal_threshold if refusal_threshold is not None else threshold
        self.dense_languages = languages
        self.min_citation_support = min_citation_support
        self.templates = templates or PromptTemplates.default()

    def ask(self, question: str, **options: Any) -> Answer:
        """Answer ``question`` (options: history, mode, filter, k, temperature)."""
        answer = None
        for event in self.ask_stream(question, **options):
            if event.type == "answer":
                answer = event.answer
        assert answer is not None
        return answer

    def ask_stream(
        self, question: str, *, history: Sequence[dict[str, str]] | None = None, mode: str = "hybrid",
        filter: dict[str, Any] | str | None = None, k: int | None = None, temperature: float = 0.0,
    ) -> Iterator[AnswerEvent]:
        """Yield generated text as it arrives, then one final event with the verified Answer."""
        if not question.strip():
            raise ConfigError("the question is empty — ask something")
        timings: dict[str, float] = {}
        language = detect_language(question) or "en"
        started = time.perf_counter()
        query = self.condense(question, history or [], language)
        timings["condense"] = elapsed_ms(started)

        t = time.perf_counter()
        result = self.retriever.search(query, self.candidates, mode=mode, filter=filter)
        limit = k or self.context_hits
        hits = dedupe(result.hits)[:limit]
        timings["retrieve"] = elapsed_ms(t)
        base: dict[str, Any] = {"id": uuid.uuid4().hex, "question": question, "language": language, "query": query,
                "model": self.llm.name}

        if not hits or self._outside_kb(query, hits, language):
            yield from self._refuse(base, hits, timings, started)
            return

        t = time.perf_counter()
        sources = pack(hits, self.context_tokens, self.llm.count_tokens, max_sources=limit)
        messages = answer_messages(question, sources, language, self.templates)
        timings["prompt"] = elapsed_ms(t)

        t = time.perf_counter()
        pieces: list[str] = []
        for piece in self.llm.stream(messages, max_tokens=self.max_new_tokens, temperature=temperature):
            if not pieces:
                timings["first_token"] = elapsed_ms(started)
            pieces.append(piece)
            yield AnswerEvent("token", piece)
        # A generation cut at max_tokens can end inside a multi-byte character.
        raw = "".join(pieces).strip().rstrip("\ufffd")
        timings["generate"] = elapsed_ms(t)
        base["usage"] = token_usage(self.llm, messages, raw)

        t = time.perf_counter()
        if not raw or is_model_refusal(raw):
            yield from self._refuse(base, sources, timings, started, streamed=True)
            return
        verified = verify_citations(raw, sources, min_support=self.min_citation_support)
        timings["verify"] = elapsed_ms(t)
        if not verified.citations:
            # Nothing in the answer is backed by a source: an answer we cannot check is not given.
            log.info("answer had no supported citation; refusing: %r", raw[:200])
            yield from self._refuse(base, sources, timings, started, streamed=True, removed=verified.removed)
            return
        timings["total"] = elapsed_ms(started)
        yield AnswerEvent("answer", answer=Answer(
            **base, answer=verified.text, grounded=True, citations=verified.citations, sources=list(sources),
            removed_citations=verified.removed, timings=timings,
        ))

    def _outside_kb(self, query: str, hits: list[Hit], language: str) -> bool:
        """Neither retriever found a convincing match: no hit holds most of the question's terms, and the
        best dense score (where the embedder understands the language) is below the calibrated gate."""
        if max(support(query, h.text) for h in hits) >= LEXICAL_GATE:
            return False
        dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
        if dense and language in self.dense_languages:
            return max(dense) < self.refusal_threshold
        return True

    def _refuse(
        self, base: dict[str, Any], closest: Sequence[Hit], timings: dict[str, float], started: float, *,
        streamed: bool = False, removed: Any = (),
    ) -> Iterator[AnswerEvent]:
        text = REFUSAL.get(base["language"], REFUSAL["en"])
        if not streamed:
            yield AnswerEvent("token", text)
        timings["total"] = elapsed_ms(started)
        yield AnswerEvent("answer", answer=Answer(
            **base, answer=text, grounded=False, refused=True, sources=list(closest)[:3],
            removed_citations=list(removed), timings=timings,
        ))

    def condense(self, question: str, history: Sequence[dict[str, str]], language: str) -> str:
        """A standalone retrieval query for a follow-up question (the question itself without history)."""
        turns = [m for m in history if m.get("role") in ("user", "assistant") and m.get("content")]
        if not turns:
            return question
        candidate = self.rewriter.condense(question, turns, language)
        last_user = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
        # Small models often echo or ramble; keep the rewrite only when it looks like a question of sane size.
        if candidate and len(candidate) <= 3 * max(len(question), 40) and not is_model_refusal(candidate):
            return f"{candidate} {question}" if candidate != question else question
        return f"{last_user} {question}".strip()


def token_usage(llm: LLM, messages: Sequence[dict[str, str]], reply: str) -> dict[str, int]:
    """OpenAI's ``usage`` of one generation, counted with the model's own tokenizer (where it has one)."""
    prompt = sum(llm.count_tokens(m["content"]) for m in messages)
    completion = llm.count_tokens(reply) if reply else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
