"""The answer pipeline: condense → retrieve → de-duplicate → gate → group and pack → generate and verify sentence by
sentence → answer, or quote the sources (extractive), or refuse."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragtune.errors import ConfigError
from ragtune.llm.base import LLM
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.llm.cached import CachedLLM
from ragtune.rag.claims import CITATION_RE, ClaimJudge, LexicalJudge, terms_of
from ragtune.rag.context import dedupe, pack
from ragtune.rag.extract import Extract, bridge_passages, closest_passage, extract_answer, passages
from ragtune.rag.prompts import REFUSAL, PromptTemplates, answer_messages, is_model_refusal
from ragtune.rag.quantities import quantities
from ragtune.rag.question import YES_NO, Focus, analyse_question, is_follow_up
from ragtune.rag.sources import (
    Source,
    group_sources,
    is_heading_only,
    newest_first,
    passage_with_headings,
    shorten,
)
from ragtune.rag.timeline import OrderAnswer, answer_order, time_question
from ragtune.rag.verify import AnswerVerifier
from ragtune.retrieve.retriever import HybridRetriever
from ragtune.retrieve.rewrite import QueryRewriter
from ragtune.retrieve.router import chains_relations
from ragtune.text import detect_language
from ragtune.timing import elapsed_ms
from ragtune.types import Answer, Citation, Hit, RemovedClaim, SourceDocument

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
# Languages a model writes well enough to answer in; models not listed are trusted with any language. The bundled
# 135M model writes English only: in 'auto' mode its Chinese questions go straight to the extractive path.
GENERATION_LANGUAGES: dict[str, frozenset[str]] = {BUNDLED_SMOLLM2: frozenset({"en"})}
# Models that answer a question which chains relations ("Who mentors the engineer who fixed INC-7004?") with its
# first hop ("Ravi Menon fixed it"), which verification passes: in 'auto' mode a two-hop quote, where the sources
# hold one, answers first (two-hop fixture, English, graph mode: 4 of 18 such answers from the bundled model).
FIRST_HOP_MODELS: frozenset[str] = frozenset({BUNDLED_SMOLLM2})
# Decoding controls for models run in this process (over generated tokens only, so copying a source is never
# penalised): small models loop without them. A repetition penalty also hurts the legitimate repeats of an answer
# (a Chinese character, "the"), so it is off; blocking repeated 8-token runs stops loops without that cost.
REPETITION_PENALTY = 1.0
NO_REPEAT_NGRAM = 8
# Hits searched for each event of a "Did A before B?" question.
_EVENT_HITS = 5
# A multi-hop question's second retrieval adds at most this many documents to the sources.
_HOP_HITS = 2
ANSWER_MODES = ("auto", "generative", "extractive")
STREAM_MODES = ("sentences", "buffer")
# Documents a refusal lists as the closest the knowledge base has.
REFUSAL_DOCUMENTS = 3
# A rewritten follow-up must read as a question: a question mark or a question word.
_QUESTION = re.compile(r"[?？]|\b(?:what|which|who|whom|whose|when|where|why|how|is|are|do|does|can)\b|"
                       "什么|哪|谁|几|多少|多久|怎么|如何|吗|呢", re.IGNORECASE)


@dataclass
class AnswerEvent:
    """A streamed piece of an answer — verified text only, as it passes — then the final Answer.

    The ``text`` of the token events, joined, is exactly ``answer.answer``.
    """

    type: Literal["token", "answer"]
    text: str = ""
    answer: Answer | None = None


@dataclass
class _Condensed:
    query: str  # what is retrieved
    prompt: str  # the question the model is asked
    anchor: str = ""  # the earlier question a follow-up leans on


class RagPipeline:
    """Answers questions from a retriever and an LLM with numbered, verified citations — or quotes the sources,
    or refuses.

    ``answer_mode``: 'generative' (the model's answer, every sentence verified), 'extractive' (the best supporting
    passage quoted, no model call) or 'auto' (generative, falling back to extractive when nothing the model wrote
    survives verification, and extractive from the start where the model cannot write the question's language).
    ``answer_stream``: 'sentences' streams each verified sentence as it passes; 'buffer' sends the verified answer
    at the end. Either way, nothing verification rejects is ever streamed.
    """

    def __init__(
        self, retriever: HybridRetriever, llm: LLM, *, context_hits: int = 3, candidates: int = 20,
        max_new_tokens: int = 128, context_tokens: int | None = None, refusal_threshold: float | None = None,
        min_citation_support: float = 0.6, templates: PromptTemplates | None = None, answer_mode: str = "auto",
        answer_stream: str = "sentences", judge: ClaimJudge | None = None, repetition_penalty: float | None = None,
        no_repeat_ngram_size: int | None = None,
    ) -> None:
        if context_hits <= 0:
            raise ConfigError("context_hits must be greater than 0.")
        if max_new_tokens <= 0:
            raise ConfigError("max_new_tokens must be greater than 0.")
        if answer_mode not in ANSWER_MODES:
            raise ConfigError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, got {answer_mode!r}.")
        if answer_stream not in STREAM_MODES:
            raise ConfigError(f"answer_stream must be one of {', '.join(STREAM_MODES)}, got {answer_stream!r}.")
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
        self.judge = judge or LexicalJudge(threshold=min_citation_support)
        self.templates = templates or PromptTemplates.default()
        self.answer_mode = answer_mode
        self.answer_stream = answer_stream
        self.decoding = self._decoding(repetition_penalty, no_repeat_ngram_size)

    def _decoding(self, penalty: float | None, ngram: int | None) -> dict[str, Any]:
        """Repetition controls sent with every generation: the given ones, else ragtune's for in-process models."""
        in_process = bool(getattr(self.llm, "in_process", False))
        penalty = penalty if penalty is not None else REPETITION_PENALTY if in_process else None
        ngram = ngram if ngram is not None else NO_REPEAT_NGRAM if in_process else None
        params: dict[str, Any] = {}
        if penalty is not None and penalty != 1.0:
            params["repetition_penalty"] = penalty
        if ngram:
            params["no_repeat_ngram_size"] = ngram
        return params

    def ask(self, question: str, **options: Any) -> Answer:
        """Answer ``question`` (options: history, mode, filter, k, temperature, answer_mode)."""
        answer = None
        for event in self.ask_stream(question, **options):
            if event.type == "answer":
                answer = event.answer
        assert answer is not None
        return answer

    def ask_stream(
        self, question: str, *, history: Sequence[dict[str, str]] | None = None, mode: str = "hybrid",
        filter: dict[str, Any] | str | None = None, k: int | None = None, temperature: float = 0.0,
        answer_mode: str | None = None,
    ) -> Iterator[AnswerEvent]:
        """Yield verified text as it passes, then one final event with the Answer."""
        if not question.strip():
            raise ConfigError("the question is empty — ask something")
        answer_mode = answer_mode or self.answer_mode
        if answer_mode not in ANSWER_MODES:
            raise ConfigError(f"answer_mode must be one of {', '.join(ANSWER_MODES)}, got {answer_mode!r}.")
        timings: dict[str, float] = {}
        language = detect_language(question) or "en"
        started = time.perf_counter()
        condensed = self.condense_turn(question, history or [], language)
        timings["condense"] = elapsed_ms(started)

        t = time.perf_counter()
        result = self.retriever.search(condensed.query, self.candidates, mode=mode, filter=filter)
        limit = k or self.context_hits
        hits = [h for h in dedupe(result.hits) if not is_heading_only(h)]
        timings["retrieve"] = elapsed_ms(t)
        base: dict[str, Any] = {"id": uuid.uuid4().hex, "question": question, "language": language,
                                "query": condensed.query, "model": self.llm.name, "retrieval": result.describe(mode)}
        focus = analyse_question(question, context=condensed.anchor)
        if not hits or self._outside_kb(focus, hits[:limit], language):
            yield from self._refuse(base, hits, focus, timings, started)
            return

        asked = time_question(question) if answer_mode in ("auto", "extractive") else None
        if asked is not None:
            # "Did A before B?": the dates of the documents that state A and B decide, quoted with both.
            t = time.perf_counter()
            ordered = answer_order(question, asked, lambda event: self._event_hits(event, mode, filter, limit))
            timings["order"] = elapsed_ms(t)
            if ordered is not None:
                yield from self._answer_order(base, ordered, focus, timings, started)
                return

        t = time.perf_counter()
        sources = group_sources(pack(hits[:limit], self.context_tokens, self.llm.count_tokens, max_sources=limit))
        if focus.asks_latest:
            sources = newest_first(sources)  # "When is the review now?": the message that moved it comes first
        timings["prompt"] = elapsed_ms(t)

        removed: list[RemovedClaim] = []
        extracted: tuple[Extract | None, list[Source]] | None = None
        generate = answer_mode == "generative" or (answer_mode == "auto" and self.writes(language))
        if generate and answer_mode == "auto" and self.llm.name in FIRST_HOP_MODELS and chains_relations(question):
            # This model writes a chained question's first hop as if it answered it: a two-hop quote comes first.
            t = time.perf_counter()
            extracted = self._extract(focus, sources, hits[:limit], condensed.query, mode, filter, timings)
            timings["extract"] = elapsed_ms(t)
            generate = extracted[0] is None or extracted[0].bridge is None
        if generate:
            verifier = AnswerVerifier(focus, sources, self.judge, language=language)
            buffered: list[str] = []
            usage: dict[str, int] = {}
            generated = self._generate(condensed.prompt, sources, language, temperature, verifier, timings, usage)
            for text in generated:
                if self.answer_stream == "sentences":
                    yield AnswerEvent("token", text)
                else:
                    buffered.append(text)
            verified = verifier.result
            base["usage"] = usage
            if verified.answered:
                if buffered:
                    yield AnswerEvent("token", "".join(buffered))
                timings["total"] = elapsed_ms(started)
                yield AnswerEvent("answer", answer=Answer(
                    **base, answer=verified.text, grounded=True, citations=verified.citations,
                    sources=[s.hit for s in sources], documents=self._documents(sources, verified.citations, focus),
                    removed_citations=verified.removed_citations, removed_claims=verified.removed_claims,
                    timings=timings, mode="generative",
                ))
                return
            removed = verified.removed_claims
            log.info("nothing generated survived verification (%d sentences removed)", len(removed))

        if answer_mode in ("auto", "extractive"):
            if extracted is None:
                t = time.perf_counter()
                extracted = self._extract(focus, sources, hits[:limit], condensed.query, mode, filter, timings)
                timings["extract"] = elapsed_ms(t)
            extract, sources = extracted
            if extract is not None:
                citations = _extract_citations(sources, extract)
                yield AnswerEvent("token", extract.text)
                timings["total"] = elapsed_ms(started)
                yield AnswerEvent("answer", answer=Answer(
                    **base, answer=extract.text, grounded=True, citations=citations,
                    sources=[s.hit for s in sources], documents=self._documents(sources, citations, focus),
                    removed_claims=removed, timings=timings, mode="extractive",
                ))
                return
        yield from self._refuse(base, hits, focus, timings, started, removed=removed)

    def _extract(
        self, focus: Focus, sources: list[Source], context: list[Hit], query: str, mode: str,
        filter: dict[str, Any] | str | None, timings: dict[str, float],
    ) -> tuple[Extract | None, list[Source]]:
        """The extractive answer, and the sources it quotes from. A question that chains relations ("Who audits the
        supplier that manufactures part FAC-22?") and finds no two-hop answer in the sources gets one more retrieval:
        the question with the passage that best links it (it keeps the question's names: "Part FAC-22 is
        manufactured by Brightwater Metals."). The documents that retrieval adds join the sources, after them, and
        are kept only when a two-hop answer quotes them."""
        extract = extract_answer(focus, sources)
        if extract is not None and extract.bridge is not None or focus.slot == YES_NO \
                or not chains_relations(focus.question):
            return extract, sources
        lead = bridge_passages(focus, [p for source in sources for p in passages(source)])
        if not lead:
            return extract, sources
        t = time.perf_counter()
        found = self.retriever.search(f"{query} {lead[0].text}", self.candidates, mode=mode, filter=filter).hits
        known = {h.document_id for h in context}
        more = [h for h in dedupe(found) if h.document_id not in known and not is_heading_only(h)][:_HOP_HITS]
        timings["hop"] = elapsed_ms(t)
        if not more:
            return extract, sources
        wider = group_sources(pack([*context, *more], self.context_tokens, self.llm.count_tokens,
                                   max_sources=len(sources) + len(more)))
        hopped = extract_answer(focus, wider)
        if hopped is not None and hopped.bridge is not None and hopped.bridge.number != hopped.passage.number:
            return hopped, wider
        return extract, sources

    def _event_hits(self, event: str, mode: str, filter: dict[str, Any] | str | None, limit: int) -> list[Hit]:
        """The passages one event of a two-event question is looked for in (a little deeper than the context)."""
        found = self.retriever.search(event, self.candidates, mode=mode, filter=filter).hits
        return [h for h in dedupe(found) if not is_heading_only(h)][: max(limit, _EVENT_HITS)]

    def _answer_order(
        self, base: dict[str, Any], ordered: OrderAnswer, focus: Focus, timings: dict[str, float], started: float,
    ) -> Iterator[AnswerEvent]:
        sources = [Source(1, [ordered.earlier.hit]), Source(2, [ordered.later.hit])]
        citations = [_extract_citation(source, found.passage.text, found.passage.chunk_id)
                     for source, found in zip(sources, (ordered.earlier, ordered.later), strict=True)]
        yield AnswerEvent("token", ordered.text)
        timings["total"] = elapsed_ms(started)
        yield AnswerEvent("answer", answer=Answer(
            **base, answer=ordered.text, grounded=True, citations=citations, sources=[s.hit for s in sources],
            documents=self._documents(sources, citations, focus), timings=timings, mode="extractive",
        ))

    def writes(self, language: str) -> bool:
        """Whether the model is trusted to write answers in ``language``."""
        return language in GENERATION_LANGUAGES.get(self.llm.name, frozenset({language}))

    def _generate(
        self, question: str, sources: list[Source], language: str, temperature: float, verifier: AnswerVerifier,
        timings: dict[str, float], usage: dict[str, int],
    ) -> Iterator[str]:
        """Generate an answer, yielding what the verifier releases as it goes (``usage`` is filled in)."""
        messages = answer_messages(question, [s.hit for s in sources], language, self.templates)
        started = time.perf_counter()
        pieces: list[str] = []
        for piece in self.llm.stream(messages, max_tokens=self.max_new_tokens, temperature=temperature,
                                     **self.decoding):
            if not pieces:
                timings["first_token"] = elapsed_ms(started)
            pieces.append(piece)
            released = verifier.feed(piece)
            if released:
                timings.setdefault("first_verified", elapsed_ms(started))
                yield released
            if verifier.done:
                break  # the rest cannot change the answer: stop the model instead of waiting for it
        raw = "".join(pieces)
        timings["generate"] = elapsed_ms(started)
        usage.update(token_usage(self.llm, messages, raw))
        if is_model_refusal(raw):
            # "I don't know" is not a claim to check: the extractive path or a refusal follows.
            verifier.close(truncated=True)
            return
        truncated = verifier.done or self.llm.count_tokens(raw) >= self.max_new_tokens - 1
        released = verifier.close(truncated=truncated)
        if released:
            timings.setdefault("first_verified", elapsed_ms(started))
            yield released

    def _outside_kb(self, focus: Focus, hits: list[Hit], language: str) -> bool:
        """Neither retriever found a convincing match: no hit (with its headings) holds most of the question's
        focus terms, and the best dense score (where the embedder understands the language) is below the gate."""
        if max(focus.coverage(terms_of(passage_with_headings(h))) for h in hits) >= LEXICAL_GATE:
            return False
        dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
        if dense and language in self.dense_languages:
            return max(dense) < self.refusal_threshold
        return True

    def _refuse(
        self, base: dict[str, Any], hits: Sequence[Hit], focus: Focus, timings: dict[str, float], started: float, *,
        removed: Sequence[RemovedClaim] = (),
    ) -> Iterator[AnswerEvent]:
        """The refusal in the question's language, listing the closest distinct documents with their best snippet."""
        text = REFUSAL.get(base["language"], REFUSAL["en"])
        closest = group_sources(hits, max_sources=REFUSAL_DOCUMENTS)
        yield AnswerEvent("token", text)
        timings["total"] = elapsed_ms(started)
        documents = [s.document(snippet=shorten(closest_passage(s, focus))) for s in closest]
        yield AnswerEvent("answer", answer=Answer(
            **base, answer=text, grounded=False, refused=True, sources=[s.hit for s in closest], documents=documents,
            removed_claims=list(removed), timings=timings, mode="refusal",
        ))

    @staticmethod
    def _documents(sources: Sequence[Source], citations: Sequence[Citation], focus: Focus) -> list[SourceDocument]:
        quotes = {c.number: c.quote for c in citations}
        return [s.document(snippet=shorten(quotes.get(s.number) or closest_passage(s, focus)),
                           cited=s.number in quotes) for s in sources]

    # ------------------------------------------------------------------ follow-ups

    def condense_turn(self, question: str, history: Sequence[dict[str, str]], language: str) -> _Condensed:
        """The retrieval query and model question for a turn of a conversation.

        A follow-up ('And in Berlin?', '那上海呢？') is rewritten into a standalone question by the model where it
        writes the language and the rewrite keeps the follow-up's own terms; otherwise — and for retrieval always
        alongside — the earlier question it leans on (the last one that stood alone) supplies the context.
        """
        turns = [m for m in history if m.get("role") in ("user", "assistant") and m.get("content")]
        asked = [m["content"] for m in turns if m["role"] == "user"]
        if not asked or not is_follow_up(question):
            return _Condensed(question, question)
        anchor = next((q for q in reversed(asked) if not is_follow_up(q)), asked[-1])
        fallback = f"{anchor} {question}"
        if not self.writes(language):
            return _Condensed(fallback, fallback, anchor)
        candidate = self.rewriter.condense(question, turns, language)
        if not self._condensed_well(candidate, question, anchor):
            log.info("follow-up condensation unusable (%r); retrieving with the earlier question", candidate[:120])
            return _Condensed(fallback, fallback, anchor)
        return _Condensed(f"{candidate} {anchor}", candidate, anchor)

    @staticmethod
    def _condensed_well(candidate: str, question: str, anchor: str) -> bool:
        """A usable rewrite: a question of sane length that keeps the follow-up's own terms, and is neither an
        answer (citation markers, amounts the conversation's questions never stated) nor the earlier question."""
        if not candidate or is_model_refusal(candidate) or len(candidate) > 2 * (len(question) + len(anchor)) + 40:
            return False
        if not _QUESTION.search(candidate) or CITATION_RE.search(candidate):
            return False
        asked = {q.value for q in quantities(f"{question} {anchor}")}
        if any(q.value not in asked for q in quantities(candidate)):
            return False
        own = terms_of(question) - terms_of(anchor)
        words = terms_of(candidate)
        return own <= words and words != terms_of(anchor)


def _extract_citations(sources: Sequence[Source], extract: Extract) -> list[Citation]:
    """The citations of an extractive answer: its passage's, after the bridge's for a two-hop answer (one citation
    quoting both where they are in one source)."""
    passage, bridge = extract.passage, extract.bridge
    if bridge is None:
        return [_extract_citation(sources[passage.number - 1], passage.text, passage.chunk_id)]
    if bridge.number == passage.number:
        return [_extract_citation(sources[passage.number - 1], f"{bridge.text} {passage.text}", passage.chunk_id)]
    return [_extract_citation(sources[p.number - 1], p.text, p.chunk_id) for p in (bridge, passage)]


def _extract_citation(source: Source, passage: str, chunk_id: str) -> Citation:
    part = next((h for h in source.parts if h.chunk_id == chunk_id), source.best)
    return Citation(
        number=source.number, chunk_id=part.chunk_id, document_id=part.document_id, source=part.source,
        page_number=part.meta.page_number, section_title=part.meta.section_title, snippet=passage,
        support=1.0, quote=passage, sections=source.sections,
    )


def token_usage(llm: LLM, messages: Sequence[dict[str, str]], reply: str) -> dict[str, int]:
    """OpenAI's ``usage`` of one generation, counted with the model's own tokenizer (where it has one)."""
    prompt = sum(llm.count_tokens(m["content"]) for m in messages)
    completion = llm.count_tokens(reply) if reply else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
