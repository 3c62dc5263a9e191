"""Frozen eval sets for a knowledge base: synthetic questions with short references and gold chunk ids,
unanswerable probes, and (optionally) the KB's rated answers, written as JSONL with a content hash.

Questions come from ``train.synthetic.synth_queries`` (LLM-written, kept only when retrieval finds their chunk
again). The same LLM writes a short reference answer from the chunk; one the claim judge does not find in the
chunk is replaced by the chunk's sentence that best answers the question, so every reference is grounded.
Unanswerable probes are kept questions with a name (or, failing that, their rarest term) swapped for an
invented one that no chunk contains: near misses the KB cannot answer, like LiHua-World's "Null" questions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.evaluate.lm import rouge_tokens
from ragtune.evaluate.samples import file_sha256, is_refusal
from ragtune.jsonl import write_jsonl
from ragtune.rag.citations import support, terms
from ragtune.rag.claims import ClaimJudge, default_judge, strip_markers
from ragtune.text import HAN_RE, detect_language, sentences
from ragtune.train.synthetic import (
    SYNTH_PROMPT,
    SYNTH_PROMPT_ZH,
    SyntheticQuery,
    knowledge_base_chunks,
    synth_queries,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

ANSWER_PROMPT = (
    "Answer the question using only the passage, in as few words as possible (a name, number, date or short "
    "phrase). Reply with the answer only.\n\nPassage:\n{passage}\n\nQuestion: {question}"
)
ANSWER_PROMPT_ZH = (
    "只根据下面的段落，用尽量少的字回答问题（一个名字、数字、日期或短语）。只回复答案。\n\n段落：\n{passage}\n\n"
    "问题：{question}"
)
NO_ANSWER = {"en": "Insufficient information", "zh": "信息不足"}

# Invented names and words for unanswerable probes; a candidate is used only when no chunk contains it.
_NAMES = {
    "en": ["Ottoline Vasquez", "Jerome Okafor", "Priya Castellano", "Tobias Wrenfield", "Marisol Quenby",
           "Anselm Drygalski", "Leocadia Frost", "Casimir Adebayo", "Henrike Solvang", "Darius Pemberton"],
    "zh": ["欧阳明轩", "司马婉清", "上官瑞霖", "慕容子墨", "诸葛清扬", "东方语彤", "皇甫星河", "尉迟景澄"],
}
_WORDS = {
    "en": ["Quorvane", "Zephyrine", "Halvexa", "Miradune", "Tessaroon", "Belquist", "Oxtavel", "Virnholt"],
    "zh": ["星澜", "云岫", "墨翎", "澄霁", "霁川", "岚汐", "翊辰", "珩溪"],
}
_CAPITALISED_RUN = re.compile(r"\b[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
_QUESTION_WORDS = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "does", "did",
                             "do", "is", "are", "was", "were", "can", "could", "should", "would", "will", "has",
                             "have", "had", "i", "the", "a", "an", "in", "on", "at", "for", "of", "to"})
_QUESTION_SHAPE = re.compile(r"[?？]\s*$|吗|什么|多少|谁|哪|怎么|怎样|如何|几|为什么|是否")
# Runs of the question-writing instruction (word 4-grams; 6 characters in Chinese): a "question" holding one
# repeats the instruction, which small models do.
_INSTRUCTION_GRAMS = {
    *(tuple(w[i : i + 4]) for w in [rouge_tokens(SYNTH_PROMPT.split("{passage}")[0])] for i in range(len(w) - 3)),
    *(tuple(w[i : i + 6]) for w in [rouge_tokens(SYNTH_PROMPT_ZH.split("{passage}")[0])] for i in range(len(w) - 5)),
}
#: Share of a question's terms its chunk must contain: a question about what the chunk never mentions
#: ("features of a smartwatch" for a password policy) passes a loose round trip in a small KB.
MIN_GROUNDING = 0.5
_ANSWER_LABEL = re.compile(r"^\s*(?:answer|a|答案|回答)\s*[:：]\s*", re.IGNORECASE)
_MAX_REFERENCE_WORDS = 40


@dataclass
class EvalSetReport:
    """What went into an eval set, and what fell short."""

    rows: int = 0
    synthetic: int = 0
    references_from_llm: int = 0
    references_extracted: int = 0
    unanswerable: int = 0
    from_feedback: int = 0
    wanted: int = 0
    synth: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_eval_set(
    kb: Any, *, size: int = 200, unanswerable: float = 0.15, from_feedback: bool = False, seed: int = 0,
    top_k: int = 5, mode: str = "hybrid", batch_size: int = 16, judge: ClaimJudge | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[list[dict[str, Any]], EvalSetReport]:
    """Rows of an eval set for ``kb`` (RAGAS field names: user_input, reference, reference_contexts,
    reference_context_ids, answerable; plus id and origin), at most ``size``: ``unanswerable`` of them probes,
    the KB's rated answers first with ``from_feedback``, synthetic questions for the rest. Deterministic for a
    given KB, model and ``seed``; every LLM reply is cached in the KB, so an interrupted run resumes."""
    if size <= 0:
        raise ConfigError(f"size must be greater than 0, got {size}")
    if not 0 <= unanswerable < 1:
        raise ConfigError(f"unanswerable must be a share between 0 and 1 (e.g. 0.15), got {unanswerable}")
    judge = judge or default_judge()
    report = EvalSetReport(wanted=size)
    n_unanswerable = round(size * unanswerable)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    if from_feedback:
        for row in feedback_rows(kb):
            if len(rows) < size - n_unanswerable and _new(row["user_input"], seen):
                rows.append(row)
        report.from_feedback = len(rows)
        if not rows:
            report.notes.append("no rated answers in the KB yet (rate answers with 👍/👎 to use --from-feedback)")
    wanted = size - n_unanswerable - len(rows)
    synthetic: list[dict[str, Any]] = []
    if wanted > 0 or n_unanswerable > 0:
        synthetic = _synthetic_rows(kb, max(wanted, 0), max(wanted, n_unanswerable), seen, seed=seed, top_k=top_k,
                                    mode=mode, batch_size=batch_size, judge=judge, report=report,
                                    on_progress=on_progress)
    chosen = synthetic[: max(wanted, 0)]
    rows += chosen
    report.synthetic = len(chosen)
    report.references_from_llm = sum(r["reference_kind"] == "llm" for r in chosen)
    report.references_extracted = len(chosen) - report.references_from_llm
    probes = unanswerable_probes(kb, [r["user_input"] for r in synthetic], n_unanswerable, seed=seed)
    for probe in probes:
        if _new(probe["user_input"], seen):
            rows.append(probe)
    report.unanswerable = sum(1 for r in rows if r["answerable"] is False)
    report.rows = len(rows)
    if report.rows < size:
        report.notes.append(f"{report.rows} of {size} rows: the round trip kept too few questions — use a larger "
                            "--size of chunks sampled, or a larger model (llm = 'openai')")
    return rows, report


def _new(question: str, seen: set[str]) -> bool:
    key = " ".join(question.split()).casefold().rstrip("?？.。! ")
    if key in seen:
        return False
    seen.add(key)
    return True


def _synthetic_rows(
    kb: Any, wanted: int, needed: int, seen: set[str], *, seed: int, top_k: int, mode: str, batch_size: int,
    judge: ClaimJudge, report: EvalSetReport, on_progress: ProgressFn | None,
) -> list[dict[str, Any]]:
    """Round-trip-filtered questions, spread over the KB's documents, each with a grounded short reference."""
    total = sum(1 for _ in knowledge_base_chunks(kb))
    if total == 0:
        raise ConfigError(f"{kb.path}: the knowledge base has no chunks — ingest documents first")
    # The round trip keeps about half of what a small model writes: sample three chunks per row wanted.
    sample = min(total, max(3 * needed, needed + 10))
    queries, synth = synth_queries(
        kb, per_chunk=1, top_k=top_k, mode=mode, sample=sample if sample < total else 0, seed=seed,
        batch_size=batch_size,
        on_progress=(lambda done, all_: on_progress("writing questions", done, all_)) if on_progress else None,
    )
    report.synth = synth.to_dict()
    usable = [q for q in _spread(queries, seed) if usable_question(q.query, q.positive)]
    report.notes += [f"{len(queries) - len(usable)} generated questions dropped: not a question, an echo of "
                     "the instruction, or about what their chunk does not say"] if len(usable) < len(queries) else []
    picked = [q for q in usable if _new(q.query, seen)][:needed]
    client = kb.llm_client()
    prompts = [(ANSWER_PROMPT_ZH if detect_language(q.positive) == "zh" else ANSWER_PROMPT)
               .format(passage=q.positive, question=q.query) for q in picked]
    replies: list[str | Exception] = []
    for start in range(0, len(prompts), batch_size):
        replies += client.generate_many(prompts[start : start + batch_size], max_tokens=48, batch_size=batch_size)
        if on_progress:
            on_progress("writing references", min(start + batch_size, len(prompts)), len(prompts))
    rows = []
    for query, reply in zip(picked, replies, strict=True):
        reference, kind = _reference(query, reply, judge)
        digest = hashlib.sha256(f"{query.chunk_id}\n{query.query}".encode()).hexdigest()[:12]
        rows.append({"id": f"s-{digest}", "user_input": query.query, "reference": reference,
                     "reference_contexts": [query.positive], "reference_context_ids": [query.chunk_id],
                     "answerable": True, "origin": "synthetic", "reference_kind": kind,
                     "document_id": query.document_id})
    if len(rows) < wanted:
        log.warning("eval set: %d synthetic questions of %d wanted survived the round trip", len(rows), wanted)
    return rows


def usable_question(question: str, chunk: str) -> bool:
    """A question worth asking: shaped like one, not a repeat of the instruction, and about what the chunk says
    (at least ``MIN_GROUNDING`` of its terms, and every number it names, are in the chunk)."""
    words = rouge_tokens(question)
    grams = {tuple(words[i : i + n]) for n in (4, 6) for i in range(len(words) - n + 1)}
    return bool(_QUESTION_SHAPE.search(question)) and not grams & _INSTRUCTION_GRAMS \
        and support(question, chunk) >= MIN_GROUNDING


def _spread(queries: Sequence[SyntheticQuery], seed: int) -> list[SyntheticQuery]:
    """The questions in an order that visits every document before taking a second from any (shuffled per
    document with ``seed``), so a small set still covers the whole KB."""
    by_document: dict[str, list[SyntheticQuery]] = {}
    for query in queries:
        by_document.setdefault(query.document_id, []).append(query)
    rng = random.Random(seed)
    documents = sorted(by_document)
    rng.shuffle(documents)
    for document in documents:
        rng.shuffle(by_document[document])
    ordered: list[SyntheticQuery] = []
    while any(by_document.values()):
        for document in documents:
            if by_document[document]:
                ordered.append(by_document[document].pop(0))
    return ordered


def _reference(query: SyntheticQuery, reply: str | Exception, judge: ClaimJudge) -> tuple[str, str]:
    """The LLM's short answer when the chunk supports it, else the chunk's sentence that best answers."""
    if not isinstance(reply, Exception):
        answer = _ANSWER_LABEL.sub("", strip_markers(reply.strip().splitlines()[0] if reply.strip() else ""))
        answer = answer.strip().strip("\"'“”「」").strip()
        words = rouge_tokens(answer)
        looping = len(words) >= 6 and len(set(words)) < 0.5 * len(words)
        if answer and not is_refusal(answer) and len(answer.split()) <= _MAX_REFERENCE_WORDS and not looping \
                and answer.casefold() not in query.query.casefold():
            claim = f"{query.query} {answer}"
            check = judge.check([claim], [query.positive], question=query.query)[0]
            if check.supported:
                return answer, "llm"
    return best_sentence(query.query, query.positive), "extractive"


def best_sentence(question: str, passage: str) -> str:
    """The sentence of ``passage`` that shares the most of the question's terms and adds something to them (a
    heading that only repeats the question's words answers nothing); the first of equals."""
    wanted = terms(question)
    candidates = sentences(passage, semicolons=True) or [passage.strip()]
    informative = [s for s in candidates if terms(s) - wanted] or candidates
    best = max(informative, key=lambda s: (len(wanted & terms(s)), -informative.index(s)))
    return " ".join(best.split())


def unanswerable_probes(kb: Any, questions: Sequence[str], count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``count`` questions the KB cannot answer: each of ``questions`` with a name (or its rarest term)
    replaced by an invented one that no chunk contains."""
    if count <= 0 or not questions:
        return []
    rng = random.Random(seed)
    order = list(questions)
    rng.shuffle(order)
    probes: list[dict[str, Any]] = []
    used: set[str] = set()
    for question in order:
        if len(probes) >= count:
            break
        language = "zh" if detect_language(question) == "zh" else "en"
        span, is_name = _swap_target(kb, question, language)
        if not span:
            continue
        pool = _NAMES[language] if is_name else _WORDS[language]
        replacement = next((c for c in rng.sample(pool, len(pool)) if c not in used and _absent(kb, c)), None)
        if replacement is None:
            continue
        used.add(replacement)
        probe = question.replace(span, replacement, 1)
        digest = hashlib.sha256(probe.encode()).hexdigest()[:12]
        probes.append({"id": f"u-{digest}", "user_input": probe, "reference": NO_ANSWER[language],
                       "reference_context_ids": [], "answerable": False, "origin": "probe",
                       "probe_of": question, "swapped": {"from": span, "to": replacement}})
    return probes


def _swap_target(kb: Any, question: str, language: str) -> tuple[str, bool]:
    """(span to replace, whether it is a name): a name when the question has one, else its rarest term."""
    if language == "zh":
        import jieba.posseg

        words = [(w.word, w.flag) for w in jieba.posseg.cut(question)]
        names = [w for w, flag in words if flag in ("nr", "ns", "nt", "nz") and len(w) >= 2]
        if names:
            return names[0], True
        nouns = [w for w, flag in words if flag.startswith("n") and len(w) >= 2 and HAN_RE.search(w)]
    else:
        runs = [m for m in _CAPITALISED_RUN.finditer(question)
                if m.start() > 0 and m.group().lower() not in _QUESTION_WORDS]
        if runs:
            return runs[0].group(), True
        nouns = [w for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", question) if w.lower() not in _QUESTION_WORDS
                 and terms(w)]
    if not nouns:
        return "", False
    # The rarest term carries the question's subject; common ones ("time", "plan") would not make it unanswerable.
    return min(nouns, key=lambda w: (_document_frequency(kb, w), nouns.index(w))), False


def _document_frequency(kb: Any, word: str) -> int:
    return len(kb.store.sparse_search(word, 1000))


def _absent(kb: Any, text: str) -> bool:
    return not kb.store.sparse_search(text, 1)


def feedback_rows(kb: Any) -> list[dict[str, Any]]:
    """Rows from the KB's rated answers (an answer's latest rating counts): a 👍 answer is its own reference,
    with the sources it cites as gold contexts (a 👍 refusal marks the question unanswerable); a 👎 with a
    correction takes the correction as reference; a 👎 without one is left out."""
    from ragtune.feedback import FeedbackStore

    latest: dict[str, Any] = {}
    with FeedbackStore(kb.path) as store:
        for record in store.records():
            latest[record.answer_id] = record
    rows = []
    for record in latest.values():
        row: dict[str, Any] = {"id": f"f-{record.answer_id}", "user_input": record.question}
        if record.rating == "up" and is_refusal(record.answer):
            language = "zh" if detect_language(record.question) == "zh" else "en"
            row.update(reference=NO_ANSWER[language], reference_context_ids=[], answerable=False,
                       origin="feedback-refusal")
        elif record.rating == "up":
            cited = [c for c in record.cited if 1 <= c.get("number", 0) <= len(record.contexts)]
            row.update(reference=strip_markers(record.answer), answerable=True, origin="feedback-up",
                       reference_contexts=[record.contexts[c["number"] - 1] for c in cited],
                       reference_context_ids=[c["chunk_id"] for c in cited])
            if not cited:
                del row["reference_contexts"], row["reference_context_ids"]
        elif record.corrected_answer:
            row.update(reference=record.corrected_answer, answerable=True, origin="feedback-correction")
        else:
            continue
        rows.append(row)
    return rows


def write_eval_set(rows: Sequence[dict[str, Any]], out: str | Path, *, report: EvalSetReport,
                   kb: Any = None) -> dict[str, Any]:
    """Write the rows as JSONL and, beside them, ``<name>.meta.json`` with the file's SHA-256 (what ``eval rag``
    records, so runs on the same frozen set can be compared), the counts and how it was made."""
    out = Path(out)
    write_jsonl(out, rows)
    meta: dict[str, Any] = {"file": out.name, "sha256": file_sha256(out), "rows": len(rows),
                            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "report": report.to_dict()}
    if kb is not None:
        from ragtune.evaluate.answering import kb_fingerprint

        meta.update(kb=str(kb.path), kb_fingerprint=kb_fingerprint(kb), model=kb.llm_client().model_name)
    meta_path = out.with_name(out.stem + ".meta.json")
    meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return meta
