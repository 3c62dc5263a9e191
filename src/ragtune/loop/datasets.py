"""Training rows from rated answers, one builder per stage: retrieval pairs, RAFT rows, preference rows and
demonstrations. Builders only assemble rows; hygiene (leakage, repeats, personal data) runs on them before any is
written (see ``loop.hygiene``)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ragtune.demonstrations import Demonstration
from ragtune.evaluate.samples import is_refusal
from ragtune.feedback import FeedbackRecord
from ragtune.rag.citations import parse_numbers, support
from ragtune.rag.claims import CITATION_RE, strip_markers
from ragtune.rag.prompts import PromptTemplates, answer_messages
from ragtune.text import detect_language, split_sentences
from ragtune.types import ChunkMeta, Hit

#: Lexical support a correction's sentence needs from a source for that source to be its oracle.
ORACLE_SUPPORT = 0.5


def latest(records: Iterable[FeedbackRecord]) -> list[FeedbackRecord]:
    """One record per answer: its latest rating (a user who changed their mind counts once, as they ended)."""
    by_answer: dict[str, FeedbackRecord] = {}
    for record in records:
        by_answer.pop(record.answer_id, None)
        by_answer[record.answer_id] = record
    return list(by_answer.values())


def cited_numbers(text: str) -> list[int]:
    """The source numbers ``[n]`` markers in ``text`` name, in order of first mention."""
    return list(dict.fromkeys(n for m in CITATION_RE.finditer(text) for n in parse_numbers(m.group(1))))


def _chunk_of(record: FeedbackRecord, number: int) -> str:
    for cited in record.cited:
        if cited.get("number") == number:
            return str(cited.get("chunk_id") or "")
    return ""


def retrieval_pairs(records: Iterable[FeedbackRecord]) -> list[dict[str, Any]]:
    """(question, passage) pairs: each source a 👍 answer cites, and each source a correction cites by its ``[n]``
    in the answer's numbering. Refusals give none."""
    pairs: list[dict[str, Any]] = []
    for record in records:
        if record.rating == "up" and not is_refusal(record.answer):
            numbers = [int(c["number"]) for c in record.cited if c.get("number")]
        elif record.rating == "down" and record.corrected_answer:
            numbers = cited_numbers(record.corrected_answer)
        else:
            continue
        for number in numbers:
            if 1 <= number <= len(record.contexts):
                pairs.append({"query": record.question, "positive": record.contexts[number - 1],
                              "chunk_id": _chunk_of(record, number), "feedback_id": record.id,
                              "answer_id": record.answer_id})
    return pairs


def preference_rows(records: Iterable[FeedbackRecord], method: str) -> list[dict[str, Any]]:
    """Rows in ragtune's feedback format for DPO (a 👎 with a correction: correction ≻ original answer) or KTO
    (👍 answers and corrections desirable, 👎 answers undesirable); the prompt is rebuilt from the answer's
    sources by the trainer."""
    rows = []
    for record in records:
        row = {"question": record.question, "answer": record.answer, "rating": record.rating,
               "contexts": record.contexts, "feedback_id": record.id}
        if record.corrected_answer:
            row["corrected_answer"] = record.corrected_answer
        if method == "dpo" and not (record.rating == "down" and record.corrected_answer and record.answer):
            continue
        rows.append(row)
    return rows


def oracle_number(record: FeedbackRecord, target: str) -> int | None:
    """The source (1-based, in the answer's numbering) a target answer rests on: the first it cites, else the
    source that best supports its sentences (None when none reaches ``ORACLE_SUPPORT``)."""
    for number in cited_numbers(target):
        if 1 <= number <= len(record.contexts):
            return number
    plain = strip_markers(target)
    scored = [(support(plain, text), n) for n, text in enumerate(record.contexts, 1)]
    best = max(scored, default=(0.0, 0))
    return best[1] if best[0] >= ORACLE_SUPPORT else None


def with_citation(target: str, number: int) -> str:
    """``target`` citing only source ``number``: its own markers removed and ``[number]`` after every sentence."""
    plain = strip_markers(target)
    parts = []
    for start, end in split_sentences(plain):
        sentence = plain[start:end].strip()
        tail = re.search(r"[.!?。！？]+$", sentence)
        cut = tail.start() if tail else len(sentence)
        parts.append(f"{sentence[:cut].rstrip()} [{number}]{sentence[cut:]}")
    joiner = "" if detect_language(plain) == "zh" else " "
    return joiner.join(parts) if parts else f"{plain} [{number}]"


def raft_rows(
    kb: Any, records: Iterable[FeedbackRecord], *, distractors: int, from_up: bool, seed: int,
    templates: PromptTemplates | None = None,
) -> list[dict[str, Any]]:
    """RAFT-style SFT rows: the question with its oracle chunk among ``distractors`` chunks the hybrid retriever
    ranks high for it (harder than RAFT's random ones), and the target — the correction, or a 👍 answer with
    ``from_up`` — citing the oracle's position with ``[n]``. The prompt is the one the answer pipeline sends."""
    templates = templates or PromptTemplates.default()
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.rating == "down" and record.corrected_answer:
            target = record.corrected_answer
        elif from_up and record.rating == "up" and record.cited and not is_refusal(record.answer):
            target = record.answer
        else:
            continue
        number = oracle_number(record, target)
        if number is None:
            continue
        oracle_text = record.contexts[number - 1]
        oracle_id = _chunk_of(record, number)
        hits = kb.retrieve(record.question, distractors + 8, mode="hybrid", rewrite="none", rerank=False).hits
        oracle = next((h for h in hits if h.chunk_id == oracle_id or h.text == oracle_text), None)
        if oracle is None:
            oracle = Hit(chunk_id=oracle_id, document_id="", source="", text=oracle_text, score=0.0,
                         meta=ChunkMeta())
        others = [h for h in hits if h.chunk_id != oracle.chunk_id and h.text != oracle_text][:distractors]
        position = rng.randint(0, len(others))
        sources = [*others[:position], oracle, *others[position:]]
        language = detect_language(record.question) or "en"
        messages = answer_messages(record.question, sources, language, templates)
        rows.append({"messages": [*messages, {"role": "assistant", "content": with_citation(target, position + 1)}],
                     "question": record.question, "feedback_id": record.id, "oracle": position + 1,
                     "kind": "correction" if record.rating == "down" else "up"})
    return rows


def demonstrations(records: Iterable[FeedbackRecord]) -> list[Demonstration]:
    """Cited 👍 answers as worked examples: the sources they cite, renumbered from [1] in order of citation, and the
    answer with its markers renumbered to match."""
    demos: list[Demonstration] = []
    for record in records:
        if record.rating != "up" or is_refusal(record.answer):
            continue
        numbers = [n for n in cited_numbers(record.answer) if 1 <= n <= len(record.contexts)]
        if not numbers:
            continue
        renumber = {old: new for new, old in enumerate(numbers, 1)}

        def swap(match: re.Match[str], renumber: dict[int, int] = renumber) -> str:
            kept = [renumber[n] for n in parse_numbers(match.group(1)) if n in renumber]
            return "[" + ", ".join(map(str, kept)) + "]" if kept else ""

        answer = " ".join(CITATION_RE.sub(swap, record.answer).split())
        demos.append(Demonstration(question=record.question, sources=[record.contexts[n - 1] for n in numbers],
                                   answer=answer, language=detect_language(record.question) or "en",
                                   id=f"f{record.id}", extra={"feedback_id": record.id}))
    return demos


def merge_demonstrations(old: Sequence[Demonstration], new: Sequence[Demonstration]) -> list[Demonstration]:
    """The champion's set plus the new ones; a question asked again keeps its newest demonstration."""
    from ragtune.loop.hygiene import normalise_question

    merged: dict[str, Demonstration] = {}
    for demo in [*old, *new]:
        merged.pop(normalise_question(demo.question), None)
        merged[normalise_question(demo.question)] = demo
    return list(merged.values())
