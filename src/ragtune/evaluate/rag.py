"""RAG answer evaluation: RAGAS's metric definitions, computed by ragtune deterministically and never NaN.

Every metric gives every row a number. Rows outside a metric's population (an unanswerable question for
``false_refusal_rate``, a row without a reference for ``answer_correctness``) are kept out of that metric's
mean and say why under ``excluded``; refusals and empty responses are scored by fixed rules (see
docs/evaluation.md), never NaN.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.evaluate.lm import rouge_l_f1
from ragtune.evaluate.samples import (
    RagSample,
    answerability,
    file_sha256,
    load_samples,
    sample_id,
    was_refused,
)
from ragtune.evaluate.stats import paired_bootstrap
from ragtune.rag.citations import split_cited_sentences, terms
from ragtune.rag.claims import ClaimCheck, ClaimJudge, default_judge, split_claims, strip_markers
from ragtune.text import HAN, detect_language
from ragtune.timing import elapsed_ms

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

#: The metrics and what each measures (the RAGAS metric whose definition it follows in brackets).
METRICS: dict[str, str] = {
    "faithfulness": "share of the response's claims that the retrieved contexts support [Faithfulness]",
    "answer_relevancy": "how closely the response addresses the question [ResponseRelevancy]",
    "context_precision": "share of the retrieved contexts that are relevant, rank-weighted for text references "
                         "[IDBasedContextPrecision / NonLLMContextPrecisionWithReference / ContextPrecision]",
    "context_recall": "share of the reference (ids, contexts or claims) that the retrieved contexts cover "
                      "[IDBasedContextRecall / NonLLMContextRecall / ContextRecall]",
    "answer_correctness": "0.75 × claim F1 against the reference + 0.25 × semantic similarity [AnswerCorrectness]",
    "semantic_similarity": "cosine similarity of the response and the reference embeddings [SemanticSimilarity]",
    "citation_precision": "share of the response's [n] citations whose source supports the cited sentence",
    "citation_recall": "share of the response's claims supported by the sources they cite",
    "refusal_accuracy": "share of unanswerable questions that were refused",
    "false_refusal_rate": "share of answerable questions that were refused",
    "exact_match": "1 when the response equals the reference exactly [ExactMatch]",
    "rouge_score": "ROUGE-L F1 of the response against the reference, Porter-stemmed [RougeScore]",
}
#: ``context_recall@K`` / ``context_precision@K``: the same over the top K of the retrieval ranking.
_AT_K = re.compile(r"(context_recall|context_precision)@([1-9][0-9]*)")
#: Answer correctness = 0.75 × factuality (claim F1) + 0.25 × semantic similarity, as RAGAS weighs them.
CORRECTNESS_WEIGHTS = (0.75, 0.25)
#: NonLLMContextRecall/Precision: a retrieved and a reference context match when their Levenshtein
#: similarity passes 0.5 (RAGAS's threshold; recall needs more than it, precision at least it).
STRING_MATCH_THRESHOLD = 0.5
#: A bare yes or no states nothing by itself; it is judged as the question's proposition (RAGAS's statement
#: generator sees the question too). Other fragments ("5:30 PM") go to the judge with the question as context.
_YES_NO = re.compile(r"^\W*(?:yes|no|yeah|nope|correct|right|true|false|是|否|对|不对|是的|不是|没有|有)\W*$",
                     re.IGNORECASE)


@dataclass
class Score:
    """One metric's number for one row, how it came about, and whether it counts towards the mean."""

    value: float
    explanation: dict[str, Any] = field(default_factory=dict)
    counted: bool = True
    reason: str = ""  # why the row is outside the metric's population


def metric_names(names: Iterable[str]) -> list[str]:
    """Validated metric names, in the order given, without repeats."""
    out: list[str] = []
    for name in names:
        if name not in METRICS and not _AT_K.fullmatch(name):
            raise ConfigError(f"unknown metric {name!r} — choose from {', '.join(METRICS)}, or "
                              "context_recall@K / context_precision@K")
        if name not in out:
            out.append(name)
    return out


def default_metrics(samples: Sequence[RagSample]) -> list[str]:
    """The metrics the rows have inputs for: faithfulness and relevancy always; context and correctness
    metrics with references; citation metrics when responses cite [n]; refusal metrics with labels."""
    names = ["faithfulness", "answer_relevancy"]
    has_reference = any(s.reference or s.reference_contexts or s.reference_context_ids for s in samples)
    if has_reference:
        names += ["context_precision", "context_recall"]
    labels = [answerability(s) for s in samples]
    if any(s.reference for s in samples) or False in labels:
        names.append("answer_correctness")
    if any(sentence.numbers for s in samples for sentence in split_cited_sentences(s.response)):
        names += ["citation_precision", "citation_recall"]
    if False in labels:
        names.append("refusal_accuracy")
    if True in labels and False in labels:
        names.append("false_refusal_rate")
    return names


# ---------------------------------------------------------------------------------------------- per-row state


class Embeddings:
    """Query and passage vectors of every text a run needs, encoded once, in a fixed order (so that two runs
    batch identically and give identical numbers)."""

    def __init__(self, embedder: Any, queries: Iterable[str], passages: Iterable[str]) -> None:
        self.name = str(getattr(embedder, "name", type(embedder).__name__))
        q, p = sorted(set(queries)), sorted(set(passages))
        self._vectors: dict[tuple[str, str], np.ndarray] = {}
        if q:
            self._vectors.update(zip((("query", t) for t in q), embedder.encode_queries(q), strict=True))
        if p:
            self._vectors.update(zip((("passage", t) for t in p), embedder.encode_documents(p), strict=True))

    def similarity(self, text: str, other: str, *, kinds: tuple[str, str] = ("passage", "passage")) -> float:
        """Cosine of the two texts' vectors (each encoded as a 'query' or a 'passage'), clipped to [0, 1]."""
        a, b = self._vectors[(kinds[0], text)], self._vectors[(kinds[1], other)]
        denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
        if denominator == 0:
            return 0.0
        return min(1.0, max(0.0, float(np.dot(a, b)) / denominator))


class _Row:
    """One sample with the facts every metric needs, and a memo of judge verdicts shared between metrics."""

    def __init__(self, sample: RagSample, judge: ClaimJudge, embeddings: Embeddings | None) -> None:
        self.sample = sample
        self.judge = judge
        self.embeddings = embeddings
        self.question = sample.user_input
        self.language = detect_language(sample.response) or detect_language(sample.user_input) or "en"
        self.refused = was_refused(sample)
        self.answerable = answerability(sample)
        self._claims: dict[str, list[str]] = {}
        self._checks: dict[tuple[tuple[str, ...], tuple[str, ...]], list[ClaimCheck]] = {}

    def claims(self, text: str) -> list[str]:
        """The claims of a response or reference (the judge's own splitting); a bare yes/no becomes the
        question followed by it, the proposition it affirms or denies."""
        if text not in self._claims:
            found = [c for c in split_claims(strip_markers(text), self.language) if c.strip()]
            if len(found) == 1 and _YES_NO.match(found[0]):
                found = [f"{self.question} {found[0]}"]
            self._claims[text] = found
        return self._claims[text]

    def check(self, claims: Sequence[str], contexts: Sequence[str]) -> list[ClaimCheck]:
        key = (tuple(claims), tuple(contexts))
        if key not in self._checks:
            if not claims:
                self._checks[key] = []
            elif not any(c.strip() for c in contexts):
                self._checks[key] = [ClaimCheck(claim=c, supported=False, score=0.0, source=None,
                                                reason="there is no context to support it") for c in claims]
            else:
                # The question is context for fragments ("5:30 PM"); a claim that already holds it is checked alone.
                question = None if any(c.startswith(self.question) for c in claims) else self.question
                self._checks[key] = list(self.judge.check(list(claims), list(contexts), question=question,
                                                          language=self.language))
        return self._checks[key]


def _claims_json(checks: Sequence[ClaimCheck]) -> list[dict[str, Any]]:
    return [{"claim": c.claim, "supported": c.supported, "score": round(float(c.score), 4),
             "source": c.source, "reason": c.reason} for c in checks]


def _excluded(reason: str, value: float = 0.0) -> Score:
    return Score(value, {"rule": reason}, counted=False, reason=reason)


# ---------------------------------------------------------------------------------------------- the metrics


def faithfulness(row: _Row) -> Score:
    """Supported claims / claims. A refusal (or an empty response) claims nothing unsupported: 1.0."""
    if row.refused:
        return Score(1.0, {"rule": "refusal: the response states nothing the contexts would have to support"})
    claims = row.claims(row.sample.response)
    if not claims:
        return Score(1.0, {"rule": "no claim: the response states nothing the contexts would have to support"})
    checks = row.check(claims, row.sample.retrieved_contexts)
    supported = sum(c.supported for c in checks)
    return Score(supported / len(checks), {"claims": _claims_json(checks)})


def answer_relevancy(row: _Row) -> Score:
    """Similarity of the question and the response. RAGAS generates questions from the response with an LLM
    and averages their cosine to the question; an LLM judge does that here; without one, the response is
    embedded directly against the question. A refusal scores 1.0 on an unanswerable question (the right
    response) and 0.0 otherwise (RAGAS's 'noncommittal' rule)."""
    if row.refused:
        right = row.answerable is False
        return Score(1.0 if right else 0.0, {"rule": "refusal of an unanswerable question: the right response"
                                             if right else "refusal (noncommittal) of a question with an answer"})
    embeddings = _need_embeddings(row, "answer_relevancy")
    response = strip_markers(row.sample.response)
    generate = getattr(row.judge, "questions_for", None)
    if generate is not None:
        questions, noncommittal = generate(response, language=row.language)
        if noncommittal:
            return Score(0.0, {"rule": "the judge found the response noncommittal", "questions": questions})
        if questions:
            sims = [embeddings.similarity(row.question, q, kinds=("query", "query")) for q in questions]
            return Score(float(np.mean(sims)), {"questions": questions,
                                                "similarities": [round(s, 4) for s in sims]})
    value = embeddings.similarity(row.question, response, kinds=("query", "passage"))
    return Score(value, {"embedder": embeddings.name})


def _need_embeddings(row: _Row, metric: str) -> Embeddings:
    if row.embeddings is None:
        raise ConfigError(f"{metric} needs an embedder")
    return row.embeddings


def _context_keys(ids: Sequence[str], sources: Sequence[str] | None) -> list[set[str]]:
    """What a reference id may name for each retrieved context: its id, its source, the source's file name."""
    keys = []
    for i, context_id in enumerate(ids):
        names = {context_id}
        if sources is not None and i < len(sources) and sources[i]:
            names |= {sources[i], re.split(r"[\\/]", sources[i])[-1]}
        keys.append(names)
    return keys


def _retrieved(sample: RagSample, k: int | None) -> tuple[list[str] | None, list[str] | None, list[str]]:
    """(ids, sources, texts) of the retrieved contexts; with ``k``, the top k of the deeper ranking if any."""
    if k is not None and sample.ranked_context_ids is not None:
        return (sample.ranked_context_ids[:k], (sample.ranked_context_sources or [])[:k] or None,
                (sample.ranked_contexts or [])[:k])
    ids = sample.retrieved_context_ids
    sources = sample.retrieved_context_sources
    cut = slice(None) if k is None else slice(k)
    return (ids[cut] if ids is not None else None, sources[cut] if sources is not None else None,
            sample.retrieved_contexts[cut])


def _string_similarity(a: str, b: str) -> float:
    from rapidfuzz.distance import Levenshtein

    return 1.0 - float(Levenshtein.normalized_distance(a, b))


def _average_precision(verdicts: Sequence[bool]) -> float:
    """Mean of precision@i over the ranks i of the relevant contexts (0 when none is relevant)."""
    relevant, total = 0, 0.0
    for i, verdict in enumerate(verdicts, start=1):
        if verdict:
            relevant += 1
            total += relevant / i
    return total / relevant if relevant else 0.0


def context_precision(row: _Row, k: int | None = None) -> Score:
    """ID-based: relevant distinct retrieved ids / distinct retrieved ids (IDBasedContextPrecision).
    Text references: average precision of the ranking, a context being relevant when it matches a reference
    context (NonLLMContextPrecisionWithReference) or, with only a reference answer, when it supports one of
    the reference's claims (ContextPrecision, judged by the claim judge instead of an LLM)."""
    sample = row.sample
    ids, sources, texts = _retrieved(sample, k)
    if row.answerable is False:
        return _excluded("unanswerable question: no context is relevant")
    if sample.reference_context_ids is not None and ids is not None:
        if not sample.reference_context_ids:
            return _excluded("no reference context ids")
        reference = set(sample.reference_context_ids)
        keys = _context_keys(ids, sources)
        distinct = list(dict.fromkeys(ids))
        relevant = [i for i in distinct if keys[ids.index(i)] & reference]
        value = len(relevant) / len(distinct) if distinct else 0.0
        return Score(value, {"variant": "ids", "retrieved": distinct, "relevant": relevant})
    if sample.reference_contexts:
        verdicts = [max(_string_similarity(text, ref) for ref in sample.reference_contexts)
                    >= STRING_MATCH_THRESHOLD for text in texts]
        return Score(_average_precision(verdicts), {"variant": "reference contexts", "relevant": verdicts})
    if sample.reference and sample.reference.strip():
        claims = row.claims(sample.reference)
        verdicts = [any(c.supported for c in row.check(claims, [text])) for text in texts]
        return Score(_average_precision(verdicts), {"variant": "reference claims", "relevant": verdicts})
    return _excluded("needs reference_context_ids (with retrieved_context_ids), reference_contexts or a reference")


def context_recall(row: _Row, k: int | None = None) -> Score:
    """ID-based: reference ids found among the retrieved / reference ids (IDBasedContextRecall). Text
    references: reference contexts matched by a retrieved one (NonLLMContextRecall), or reference claims
    the contexts support (ContextRecall, judged by the claim judge)."""
    sample = row.sample
    ids, sources, texts = _retrieved(sample, k)
    if row.answerable is False:
        return _excluded("unanswerable question: there is nothing to recall")
    if sample.reference_context_ids is not None and ids is not None:
        reference = list(dict.fromkeys(sample.reference_context_ids))
        if not reference:
            return _excluded("no reference context ids")
        found = set().union(*_context_keys(ids, sources)) if ids else set()
        hits = [r for r in reference if r in found]
        return Score(len(hits) / len(reference), {"variant": "ids", "found": hits,
                                                  "missed": [r for r in reference if r not in found]})
    if sample.reference_contexts:
        matched = [bool(texts) and max(_string_similarity(text, ref) for text in texts) > STRING_MATCH_THRESHOLD
                   for ref in sample.reference_contexts]
        return Score(sum(matched) / len(matched), {"variant": "reference contexts", "matched": matched})
    if sample.reference and sample.reference.strip():
        checks = row.check(row.claims(sample.reference), texts)
        if not checks:
            return _excluded("the reference has no claim")
        return Score(sum(c.supported for c in checks) / len(checks),
                     {"variant": "reference claims", "claims": _claims_json(checks)})
    return _excluded("needs reference_context_ids (with retrieved_context_ids), reference_contexts or a reference")


def answer_correctness(row: _Row) -> Score:
    """0.75 × F1 of the response's claims against the reference's + 0.25 × semantic similarity (RAGAS's
    weights). Precision: response claims the reference (read with the question) supports; recall: reference
    claims the response supports. On an unanswerable question a refusal scores 1.0 and an answer 0.0; a
    refusal of an answerable question scores 0.0."""
    sample = row.sample
    if row.answerable is False:
        return Score(1.0 if row.refused else 0.0, {"rule": "unanswerable question: " + (
            "refused, as it should be" if row.refused else "answered instead of refused")})
    if row.refused:
        return Score(0.0, {"rule": "refusal of a question with an answer"})
    if not (sample.reference and sample.reference.strip()):
        return _excluded("no reference answer")
    response = strip_markers(sample.response)
    response_checks = row.check(row.claims(sample.response), [f"{row.question}\n{sample.reference}"])
    reference_checks = row.check(row.claims(sample.reference), [f"{row.question}\n{response}"])
    precision = _share(response_checks)
    recall = _share(reference_checks)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    similarity = _need_embeddings(row, "answer_correctness").similarity(response, sample.reference)
    value = CORRECTNESS_WEIGHTS[0] * f1 + CORRECTNESS_WEIGHTS[1] * similarity
    return Score(value, {
        "f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
        "similarity": round(similarity, 4),
        "unsupported_claims": [c.claim for c in response_checks if not c.supported],
        "missed_reference_claims": [c.claim for c in reference_checks if not c.supported],
    })


def _share(checks: Sequence[ClaimCheck]) -> float:
    return sum(c.supported for c in checks) / len(checks) if checks else 0.0


def semantic_similarity(row: _Row) -> Score:
    """Cosine of the response and reference embeddings (RAGAS's SemanticSimilarity), clipped to [0, 1]."""
    sample = row.sample
    if not (sample.reference and sample.reference.strip()):
        return _excluded("no reference answer")
    if row.answerable is False:
        return _excluded("unanswerable question: see answer_correctness and refusal_accuracy")
    embeddings = _need_embeddings(row, "semantic_similarity")
    return Score(embeddings.similarity(strip_markers(sample.response), sample.reference), {})


def _citation_checks(row: _Row) -> tuple[list[dict[str, Any]], int, int, int]:
    """Per cited sentence: its citations and whether the cited sources support it (one by one and together)."""
    contexts = row.sample.retrieved_contexts
    sentences = [s for s in split_cited_sentences(row.sample.response) if s.plain.strip() and terms(s.plain)]
    details, good_citations, citations, supported_sentences = [], 0, 0, 0
    for sentence in sentences:
        valid = [n for n in sentence.numbers if 1 <= n <= len(contexts)]
        each = {n: bool(row.check([sentence.plain], [contexts[n - 1]])[0].supported) for n in valid}
        together = bool(valid) and row.check([sentence.plain], ["\n".join(contexts[n - 1] for n in valid)])[0].supported
        good_citations += sum(each.values())
        citations += len(sentence.numbers)
        supported_sentences += together or any(each.values())
        details.append({"sentence": sentence.plain, "citations": sentence.numbers,
                        "supporting": [n for n, ok in each.items() if ok],
                        "supported": together or any(each.values())})
    return details, good_citations, citations, supported_sentences


def citation_precision(row: _Row) -> Score:
    """Citations whose source supports the cited sentence / all citations (a number naming no source counts
    as wrong). A refusal is outside the population; an answer without any citation scores 0."""
    if row.refused:
        return _excluded("refusal: nothing to cite")
    details, good, total, _ = _citation_checks(row)
    return Score(good / total if total else 0.0, {"sentences": details})


def citation_recall(row: _Row) -> Score:
    """Sentences supported by the sources they cite / sentences (an uncited sentence is unsupported)."""
    if row.refused:
        return _excluded("refusal: nothing to cite")
    details, _, _, supported = _citation_checks(row)
    return Score(supported / len(details) if details else 0.0, {"sentences": details})


def refusal_accuracy(row: _Row) -> Score:
    """Counted on unanswerable questions: 1 when refused. On other rows the value says whether the refusal
    decision was right (1 = answered), but only unanswerable rows enter the mean."""
    if row.answerable is False:
        return Score(1.0 if row.refused else 0.0, {"refused": row.refused})
    reason = "answerable question" if row.answerable else "answerability unknown (set 'answerable' or a reference)"
    return Score(0.0 if row.refused else 1.0, {"refused": row.refused}, counted=False, reason=reason)


def false_refusal_rate(row: _Row) -> Score:
    """Counted on answerable questions: 1 when refused (lower is better). Unanswerable rows get 0."""
    if row.answerable is True:
        return Score(1.0 if row.refused else 0.0, {"refused": row.refused})
    reason = "unanswerable question" if row.answerable is False else "answerability unknown"
    return Score(0.0, {"refused": row.refused}, counted=False, reason=reason)


def exact_match(row: _Row) -> Score:
    """1.0 when the response is the reference, character for character (RAGAS's ExactMatch)."""
    if row.sample.reference is None:
        return _excluded("no reference answer")
    return Score(float(row.sample.response == row.sample.reference), {})


_ROUGE_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_HAN_CHAR = re.compile(f"([{HAN}])")


@functools.lru_cache(maxsize=1)
def _porter() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


def stemmed_rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokens (lower case, ASCII letters and digits, Porter-stemmed when longer than 3), plus
    each Chinese character as a token of its own (rouge-score drops them, scoring Chinese 0)."""
    stemmer = _porter()
    tokens: list[str] = []
    for piece in _HAN_CHAR.split(text.lower()):
        if _HAN_CHAR.fullmatch(piece):
            tokens.append(piece)
            continue
        tokens.extend(stemmer.stem(word) if len(word) > 3 else word
                      for word in _ROUGE_NON_ALNUM.sub(" ", piece).split())
    return tokens


def rouge_score(row: _Row) -> Score:
    """ROUGE-L F1 of the response against the reference, as RAGAS's RougeScore (rouge-score, stemmed)."""
    if row.sample.reference is None:
        return _excluded("no reference answer")
    response, reference = stemmed_rouge_tokens(row.sample.response), stemmed_rouge_tokens(row.sample.reference)
    return Score(rouge_l_f1(response, reference), {})


_SCORERS: dict[str, Callable[[_Row], Score]] = {
    "faithfulness": faithfulness,
    "answer_relevancy": answer_relevancy,
    "context_precision": context_precision,
    "context_recall": context_recall,
    "answer_correctness": answer_correctness,
    "semantic_similarity": semantic_similarity,
    "citation_precision": citation_precision,
    "citation_recall": citation_recall,
    "refusal_accuracy": refusal_accuracy,
    "false_refusal_rate": false_refusal_rate,
    "exact_match": exact_match,
    "rouge_score": rouge_score,
}
_ITEM_KEYS = frozenset({"id", "excluded", "explanation"})
_NEEDS_EMBEDDINGS = {"answer_relevancy", "answer_correctness", "semantic_similarity"}


def _scorer(name: str) -> Callable[[_Row], Score]:
    at_k = _AT_K.fullmatch(name)
    if at_k:
        base, k = at_k.group(1), int(at_k.group(2))
        function = context_recall if base == "context_recall" else context_precision
        return lambda row: function(row, k)
    return _SCORERS[name]


# ---------------------------------------------------------------------------------------------- scoring


def score_samples(
    samples: Sequence[RagSample], metrics: Sequence[str], *, judge: ClaimJudge | None = None,
    embedder: Any = None, on_progress: ProgressFn | None = None, workers: int = 1,
) -> tuple[list[dict[str, Score]], dict[str, float]]:
    """Each row's Score per metric, in input order, and the milliseconds each metric took in all."""
    metrics = metric_names(metrics)
    judge = judge or default_judge()
    embeddings = None
    if _NEEDS_EMBEDDINGS & set(metrics):
        if embedder is None:
            raise ConfigError(f"{', '.join(sorted(_NEEDS_EMBEDDINGS & set(metrics)))} need an embedder")
        embeddings = _embeddings_for(samples, metrics, embedder, judge)
    scorers = {name: _scorer(name) for name in metrics}
    timings = dict.fromkeys(metrics, 0.0)

    def score(sample: RagSample) -> tuple[dict[str, Score], dict[str, float]]:
        row = _Row(sample, judge, embeddings)
        scores, spent = {}, {}
        for name, scorer in scorers.items():
            started = time.perf_counter()
            result = scorer(row)
            if not math.isfinite(result.value):  # a judge or embedder gone wrong must not leak NaN into a run
                raise ConfigError(f"{name} gave {result.value} for {sample.user_input[:60]!r} — please report this")
            scores[name] = Score(min(1.0, max(0.0, float(result.value))), result.explanation, result.counted,
                                 result.reason)
            spent[name] = elapsed_ms(started, 3)
        return scores, spent

    results: list[dict[str, Score]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ragtune-eval") as pool:
        for done, (scores, spent) in enumerate(pool.map(score, samples), start=1):
            results.append(scores)
            for name, ms in spent.items():
                timings[name] += ms
            if on_progress:
                on_progress("scoring", done, len(samples))
    return results, {name: round(ms, 1) for name, ms in timings.items()}


def _embeddings_for(samples: Sequence[RagSample], metrics: Sequence[str], embedder: Any, judge: Any) -> Embeddings:
    queries: set[str] = set()
    passages: set[str] = set()
    asked: list[tuple[str, str]] = []  # (response, language) an LLM judge writes questions for
    for sample in samples:
        response = strip_markers(sample.response)
        if "answer_relevancy" in metrics:
            queries.add(sample.user_input)
            passages.add(response)
            if hasattr(judge, "questions_for") and not was_refused(sample):
                asked.append((response, detect_language(sample.response) or detect_language(sample.user_input)
                              or "en"))
        if {"answer_correctness", "semantic_similarity"} & set(metrics) and sample.reference:
            passages.update((response, sample.reference))
    if asked:
        # The judge's questions are embedded with the rest; its replies are cached, so scoring asks nothing again.
        with ThreadPoolExecutor(max_workers=int(getattr(judge, "concurrency", 1))) as pool:
            for questions, _ in pool.map(lambda a: judge.questions_for(a[0], language=a[1]), asked):
                queries.update(questions)
    return Embeddings(embedder, queries, passages)


def summarize(
    samples: Sequence[RagSample], scores: Sequence[Mapping[str, Score]], metrics: Sequence[str], *,
    by: str | None = None,
) -> dict[str, Any]:
    """Means over each metric's counted rows, their counts, and (with ``by``) the same per group."""
    means, counts = _means(scores, metrics)
    out: dict[str, Any] = {"metrics": means, "counts": counts}
    if by:
        groups: dict[str, list[Mapping[str, Score]]] = {}
        for sample, row in zip(samples, scores, strict=True):
            groups.setdefault(str(sample.extra(by)), []).append(row)
        out["groups"] = {by: {}}
        for name, rows in sorted(groups.items()):
            means, counts = _means(rows, metrics)
            # A group none of whose rows a metric counts has no mean for it (not a misleading 0).
            out["groups"][by][name] = {"metrics": {m: v for m, v in means.items() if counts[m]}, "counts": counts}
    return out


def _means(rows: Sequence[Mapping[str, Score]], metrics: Sequence[str]) -> tuple[dict[str, float], dict[str, int]]:
    means, counts = {}, {}
    for name in metrics:
        values = [row[name].value for row in rows if row[name].counted]
        counts[name] = len(values)
        means[name] = round(math.fsum(values) / len(values), 6) if values else 0.0
    return means, counts


def item_json(index: int, sample: RagSample, scores: Mapping[str, Score]) -> dict[str, Any]:
    """One row of the output: the inputs, a number per metric, what was excluded and why, the explanations."""
    item: dict[str, Any] = {"id": sample_id(sample, index)}
    # The row's own fields (type, origin, ...), but not what an earlier run wrote (when its items are re-scored).
    item.update({key: value for key, value in (sample.model_extra or {}).items()
                 if key not in _ITEM_KEYS and key not in METRICS and not _AT_K.fullmatch(key)})
    item.update(user_input=sample.user_input, response=sample.response, reference=sample.reference,
                refused=was_refused(sample), answerable=answerability(sample))
    item.update({name: score.value for name, score in scores.items()})
    excluded = {name: score.reason for name, score in scores.items() if not score.counted}
    if excluded:
        item["excluded"] = excluded
    item["explanation"] = {name: score.explanation for name, score in scores.items() if score.explanation}
    item["retrieved_contexts"] = sample.retrieved_contexts
    if sample.retrieved_context_ids is not None:
        item["retrieved_context_ids"] = sample.retrieved_context_ids
    if sample.retrieved_context_sources is not None:
        item["retrieved_context_sources"] = sample.retrieved_context_sources
    if sample.reference_context_ids is not None:
        item["reference_context_ids"] = sample.reference_context_ids
    if sample.timings_ms:
        item["timings_ms"] = sample.timings_ms
    return item


# ---------------------------------------------------------------------------------------------- comparison


def compare_runs(current: Mapping[str, Any], baseline: Mapping[str, Any], *, confidence: float = 0.95,
                 n_resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Per metric both runs measured: the paired difference (current − baseline) over the items both runs
    counted, paired by item id, with its bootstrap confidence interval."""
    base_items = {str(item["id"]): item for item in baseline.get("items", [])}
    out: dict[str, Any] = {"metrics": {}, "warnings": []}
    current_set = (current.get("config") or {}).get("data_sha256")
    baseline_set = (baseline.get("config") or {}).get("data_sha256")
    if current_set and baseline_set and current_set != baseline_set:
        out["warnings"].append("the two runs measured different eval-set files (data_sha256 differs)")
    for name in current.get("metrics", {}):
        if name not in baseline.get("metrics", {}):
            continue
        pairs = []
        for item in current.get("items", []):
            other = base_items.get(str(item["id"]))
            if other is None or name not in other:
                continue
            if name in item.get("excluded", {}) or name in other.get("excluded", {}):
                continue
            pairs.append((float(item[name]), float(other[name])))
        if not pairs:
            out["warnings"].append(f"{name}: no item counted in both runs")
            continue
        diff = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], confidence=confidence,
                                n_resamples=n_resamples, seed=seed)
        out["metrics"][name] = {"current": round(float(np.mean([p[0] for p in pairs])), 6),
                                "baseline": round(float(np.mean([p[1] for p in pairs])), 6),
                                "difference": round(diff.mean, 6), "low": round(diff.low, 6),
                                "high": round(diff.high, 6), "n": diff.n, "significant": diff.significant}
    unpaired = len(current.get("items", [])) - sum(str(i["id"]) in base_items for i in current.get("items", []))
    if unpaired:
        out["warnings"].append(f"{unpaired} items have no counterpart in the baseline run (paired by id)")
    out["confidence"] = confidence
    return out


# ---------------------------------------------------------------------------------------------- the entry point


def evaluate_rag(
    data: str | Path | Iterable[RagSample | Mapping[str, Any]] | None = None, *,
    kb: Any = None, questions: str | Path | Iterable[RagSample | Mapping[str, Any]] | None = None,
    metrics: Sequence[str] | None = None, judge: ClaimJudge | str | None = None, judge_model: str | None = None,
    judge_base_url: str | None = None, judge_api_key: str | None = None, embedder: Any = None,
    by: str | None = None, compare: str | Path | Mapping[str, Any] | None = None, report: str | Path | None = None,
    cache: str | Path | bool | None = None, limit: int | None = None, on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score RAG answers: given ones (``data``: rows with RAGAS's field names), or the answers a knowledge base
    gives (``kb`` + ``questions``). Returns ``{"metrics", "counts", "items", "config", "timings_ms"}`` (plus
    ``latency_ms`` when ragtune answered, ``groups`` with ``by``, ``comparison`` with ``compare``).

    ``judge``: None (ragtune's claim judge, no LLM), a ClaimJudge, or an LLM backend name ('openai', 'local',
    'llamacpp') with ``judge_model``/``judge_base_url``. ``cache``: where answers and LLM-judge replies are
    kept so an interrupted run resumes (default: in the KB folder, or ~/.cache/ragtune/eval; False: none).
    ``report``: also write a self-contained HTML report there.
    """
    from ragtune.evaluate.answering import answer_questions, cache_directory, kb_fingerprint

    started = time.perf_counter()
    if (data is None) == (questions is None):
        raise ConfigError("give either data (rows with responses to score) or questions with a knowledge base")
    if questions is not None and kb is None:
        raise ConfigError("questions need a knowledge base to answer them — pass kb (--kb)")
    source = data if data is not None else questions
    assert source is not None
    samples = load_samples(source)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise ConfigError(f"{source if isinstance(source, (str, Path)) else 'data'}: no rows to evaluate")
    opened = None
    if kb is not None and not hasattr(kb, "ask"):
        from ragtune.kb import KnowledgeBase

        kb = opened = KnowledgeBase.open(kb)
    try:
        cache_dir = cache_directory(kb, cache)
        timings: dict[str, Any] = {}
        config: dict[str, Any] = {}
        if isinstance(source, (str, Path)):
            config.update(data=str(source), data_sha256=file_sha256(source))
        if questions is not None:
            t = time.perf_counter()
            samples = answer_questions(kb, samples, metrics=metrics or (), cache_dir=cache_dir,
                                       on_progress=on_progress)
            timings["answer"] = elapsed_ms(t)
            config.update(kb=str(kb.path), kb_fingerprint=kb_fingerprint(kb), model=kb.llm.name,
                          llm=kb.settings.llm, context_hits=kb.settings.context_hits)
        names = metric_names(metrics) if metrics else default_metrics(samples)
        judge_obj = _judge(judge, judge_model, judge_base_url, judge_api_key, cache_dir)
        embedder_obj = _embedder(embedder, kb) if _NEEDS_EMBEDDINGS & set(names) else None
        t = time.perf_counter()
        scores, per_metric = score_samples(samples, names, judge=judge_obj, embedder=embedder_obj,
                                           on_progress=on_progress,
                                           workers=int(getattr(judge_obj, "concurrency", 1)))
        timings["score"] = elapsed_ms(t)
        timings["per_metric"] = per_metric
        result: dict[str, Any] = summarize(samples, scores, names, by=by)
        result["items"] = [item_json(i, s, sc) for i, (s, sc) in enumerate(zip(samples, scores, strict=True))]
        names = _drop_empty(result, names, explicit=bool(metrics))
        config.update(metrics=names, rows=len(samples), judge=_judge_name(judge_obj),
                      embedder=getattr(embedder_obj, "name", None), by=by)
        from ragtune import __version__

        config["ragtune"] = __version__
        result["config"] = config
        latency = _latency(samples)
        if latency:
            result["latency_ms"] = latency
        if compare is not None:
            baseline = _load_run(compare)
            result["comparison"] = compare_runs(result, baseline)
        timings["total"] = elapsed_ms(started)
        result["timings_ms"] = timings
        if report is not None:
            from ragtune.evaluate.report import write_report

            write_report(result, report)
        return result
    finally:
        if opened is not None:
            opened.close()


def _drop_empty(result: dict[str, Any], names: list[str], explicit: bool) -> list[str]:
    """Metrics no row counts towards: an error when they were asked for, left out when they were defaults."""
    empty = [name for name in names if result["counts"][name] == 0]
    if empty and explicit:
        hints = {"refusal_accuracy": "mark unanswerable rows with answerable: false",
                 "false_refusal_rate": "mark answerable rows with answerable: true, or give references",
                 "citation_precision": "responses must contain answers, not only refusals",
                 "citation_recall": "responses must contain answers, not only refusals"}
        raise ConfigError("no row counts towards " + "; ".join(
            f"{n} — {hints.get(n, 'give references (reference, reference_contexts or reference_context_ids)')}"
            for n in empty))
    for name in empty:
        log.info("leaving out %s: no row has its inputs", name)
        for key in ("metrics", "counts"):
            result[key].pop(name)
        for item in result["items"]:
            item.pop(name, None)
            item.get("excluded", {}).pop(name, None)
            item["explanation"].pop(name, None)
        for groups in result.get("groups", {}).values():
            for group in groups.values():
                group["metrics"].pop(name, None)
                group["counts"].pop(name, None)
    for item in result["items"]:
        if not item.get("excluded", True):
            del item["excluded"]
    return [name for name in names if name not in empty]


def _load_run(compare: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(compare, Mapping):
        return compare
    import json

    path = Path(compare)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file — save a run with 'ragtune eval rag ... --json > {path}'") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a ragtune eval rag JSON result ({exc.msg})") from None
    if not isinstance(run, dict) or "items" not in run or "metrics" not in run:
        raise ConfigError(f"{path}: not a ragtune eval rag JSON result (no 'metrics' and 'items')")
    return run


def _latency(samples: Sequence[RagSample]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for sample in samples:
        for stage, ms in sample.timings_ms.items():
            stages.setdefault(stage, []).append(float(ms))
    return {stage: {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1),
                    "mean": round(float(np.mean(v)), 1)} for stage, v in sorted(stages.items())}


def _judge(judge: ClaimJudge | str | None, model: str | None, base_url: str | None, api_key: str | None,
           cache_dir: Path | None) -> ClaimJudge:
    if judge is None or judge in ("default", "lexical"):
        return default_judge()
    if not isinstance(judge, str):
        return judge
    from ragtune.llm.cached import CachedLLM, LLMCache
    from ragtune.llm.factory import BACKENDS, load_llm
    from ragtune.rag.llm_judge import LLMJudge

    if judge not in BACKENDS:
        raise ConfigError(f"unknown judge {judge!r} — use 'default' (no LLM) or an LLM backend: {', '.join(BACKENDS)}")
    llm = load_llm(judge, model=model, base_url=base_url, api_key=api_key)
    cache = LLMCache(cache_dir / "judge.sqlite") if cache_dir is not None else LLMCache()
    return LLMJudge(CachedLLM(llm, cache=cache, max_tokens=512, timeout_s=120))


def _judge_name(judge: Any) -> str:
    name = getattr(judge, "name", None)
    return str(name) if name else type(judge).__name__


def _embedder(embedder: Any, kb: Any) -> Any:
    if embedder is not None and not isinstance(embedder, str):
        return embedder
    from ragtune.embed import load_embedder

    if embedder is None and kb is not None:
        return kb.embedder
    if embedder is None:
        from ragtune.settings import load_settings

        embedder = load_settings().embedder
    return load_embedder(embedder)
