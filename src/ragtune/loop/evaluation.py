"""Measuring a champion and a challenger on the frozen eval set, item by item, so the gate can pair them.

A :class:`Variant` is a serving configuration of the knowledge base — setting overrides (a reranker, an LLM
adapter, demonstrations, a refusal threshold) and, for an embedder challenger, the model whose vectors are staged
beside the live ones. :func:`open_variant` serves it from the live KB without changing anything that serves.

Retrieval metrics come from each eval question's ranking against its gold chunks, answer metrics from the KB's
own answers scored by ``evaluate`` (answers cached, so a champion measured again costs nothing and scores the
same). Latency is timed fresh with the two systems alternating question by question, so the machine's load
falls on both alike; peak RSS is read from a separate process that serves a few questions with one system.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.evaluate.answering import answer_questions
from ragtune.evaluate.ir import per_query
from ragtune.evaluate.rag import compare_runs, score_samples
from ragtune.evaluate.samples import RagSample, answerability, sample_id
from ragtune.kb import KnowledgeBase
from ragtune.loop.recipe import MeasureSection, metric_kind
from ragtune.train.adapt import StagedStore, candidate_embedder

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
#: Depth of the ranking retrieval metrics are computed on.
RANKING_DEPTH = 20
_IR_NAMES = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "mrr@10": "recip_rank_10", "ndcg@5": "ndcg_cut_5",
             "recall@5": "recall_5", "recall@20": "recall_20"}


@dataclass
class Variant:
    """A serving configuration to measure: setting overrides and, for an embedder challenger, the model whose
    vectors are staged (``staged_embedder``, at ``precision``)."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    staged_embedder: str | None = None
    precision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(**data)


@contextlib.contextmanager
def open_variant(kb: Any, variant: Variant, *, answers: bool = False) -> Iterator[KnowledgeBase]:
    """``kb`` serving as ``variant`` describes, for measuring only: nothing it does is audited, and closing it
    leaves ``kb`` open. ``answers``: it will answer questions (its LLM is ``kb``'s unless the adapter differs)."""
    settings = kb.settings.model_copy(update={**variant.settings, "audit": False})
    store: Any = kb.store
    if variant.staged_embedder:
        ids, vectors = kb.store.staged_vectors()
        if not ids:
            raise ConfigError(f"{kb.path}: no vectors are staged for {variant.staged_embedder} — run 'ragtune loop "
                              "run' again to stage them")
        store = StagedStore(kb.store, ids, vectors)
        embedder = candidate_embedder(kb, Path(variant.staged_embedder), variant.precision)
        settings = settings.model_copy(update={"embedder": embedder.name})
    else:
        embedder = kb.embedder
    llm = kb.llm if answers and settings.llm_adapter == kb.settings.llm_adapter else None
    yield KnowledgeBase(store, settings, embedder, llm)


def _labelled(progress: ProgressFn, label: str) -> ProgressFn:
    return lambda _stage, done, total: progress(label, done, total)


def _depth_run(hits: Sequence[Any]) -> dict[str, float]:
    return {h.chunk_id: 1.0 / rank for rank, h in enumerate(hits, 1)}


def measure(
    kb: Any, rows: Sequence[dict[str, Any]], champion: Variant, challenger: Variant, metrics: Sequence[str],
    settings: MeasureSection, *, latency_path: str = "retrieve", cache_dir: Path | None = None,
    measure_rss: bool = True, on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Both systems on ``rows`` (eval-set rows): per-item scores of every metric in ``metrics`` (for the
    bootstrap), their means, latency_p95 over the path the stage changes ('retrieve' or 'answer') and peak RSS;
    plus ``comparison``, the paired differences (challenger − champion) with their CIs."""
    progress = on_progress or (lambda stage, done, total: None)
    kinds = {name: metric_kind(name) for name in metrics}
    retrieval = [n for n, k in kinds.items() if k == "retrieval"]
    answer = [n for n, k in kinds.items() if k == "answer"]
    variants = {"champion": champion, "challenger": challenger}
    items: dict[str, dict[str, dict[str, Any]]] = {"champion": {}, "challenger": {}}
    latency: dict[str, list[float]] = {"champion": [], "challenger": []}
    samples = [RagSample.model_validate(row) for row in rows]
    ids = [sample_id(s, i) for i, s in enumerate(samples)]
    for name in variants:
        for rid in ids:
            items[name][rid] = {"id": rid, "excluded": {}}
    with contextlib.ExitStack() as stack:
        opened = {name: stack.enter_context(open_variant(kb, v, answers=bool(answer) or latency_path == "answer"))
                  for name, v in variants.items()}
        if retrieval or latency_path == "retrieve":
            _retrieval(opened, samples, ids, retrieval, items, latency if latency_path == "retrieve" else None,
                       progress, repeats=settings.latency_repeats)
        if answer:
            for name, variant_kb in opened.items():
                answered = answer_questions(variant_kb, samples, metrics=answer, cache_dir=cache_dir,
                                            on_progress=_labelled(progress, f"answering ({name})"))
                scores, _ = score_samples(answered, answer, embedder=kb.embedder)
                for rid, row in zip(ids, scores, strict=True):
                    for metric, score in row.items():
                        items[name][rid][metric] = score.value
                        if not score.counted:
                            items[name][rid]["excluded"][metric] = score.reason
        if latency_path == "answer":
            _answer_latency(opened, samples[: settings.latency_questions], latency, progress)
    result: dict[str, Any] = {}
    for name in variants:
        run_items = list(items[name].values())
        means = {}
        for metric in metrics:
            if kinds[metric] == "system":
                continue
            counted = [i[metric] for i in run_items if metric in i and metric not in i["excluded"]]
            if counted:
                means[metric] = round(float(np.mean(counted)), 6)
        system = {"latency_p95": round(float(np.percentile(latency[name], 95)), 2) if latency[name] else None}
        result[name] = {"run": {"metrics": means, "items": run_items}, "system": system,
                        "latency_ms": {"n": len(latency[name]), "path": latency_path}}
    if measure_rss and "peak_rss" in metrics:
        questions = [s.user_input for s in samples[: settings.rss_questions]]
        for name, variant in variants.items():
            progress(f"measuring peak RSS ({name})", 0, 1)
            result[name]["system"]["peak_rss"] = peak_rss(kb.path, variant, questions,
                                                          answers=latency_path == "answer")
    result["comparison"] = compare_runs(result["challenger"]["run"], result["champion"]["run"],
                                        confidence=settings.confidence, n_resamples=settings.resamples,
                                        seed=settings.seed)
    return result


def _retrieval(
    opened: dict[str, KnowledgeBase], samples: Sequence[RagSample], ids: Sequence[str], metrics: Sequence[str],
    items: dict[str, dict[str, dict[str, Any]]], latency: dict[str, list[float]] | None, progress: ProgressFn,
    *, repeats: int = 1,
) -> None:
    """Rank every question with both systems (alternating which goes first), score the gold-chunk ones. With
    ``latency``, each question is timed ``repeats`` times per system (the systems alternating) and the fastest
    time counts: a burst of load from another process slows one run, rarely all of them."""
    names = list(opened)
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    qrels: dict[str, dict[str, int]] = {}
    for n, (rid, sample) in enumerate(zip(ids, samples, strict=True)):
        gold = sample.reference_context_ids
        judged = bool(gold) and answerability(sample) is not False
        if not judged and latency is None:
            continue
        times: dict[str, list[float]] = {name: [] for name in names}
        for repeat in range(repeats if latency is not None else 1):
            for name in (names if (n + repeat) % 2 == 0 else names[::-1]):
                started = time.perf_counter()
                hits = opened[name].retrieve(sample.user_input, RANKING_DEPTH).hits
                times[name].append((time.perf_counter() - started) * 1000)
                if repeat == 0:
                    runs[name][rid] = _depth_run(hits)
        if latency is not None:
            for name in names:
                latency[name].append(min(times[name]))
        if judged and gold:
            qrels[rid] = {cid: 1 for cid in gold}
        progress("ranking", n + 1, len(samples))
    for name in names:
        scores = per_query(runs[name], qrels, [_IR_NAMES[m] for m in metrics])
        for rid in ids:
            for metric in metrics:
                if rid in scores:
                    items[name][rid][metric] = scores[rid][_IR_NAMES[metric]]
                else:
                    items[name][rid][metric] = 0.0
                    items[name][rid]["excluded"][metric] = "no gold chunks (unanswerable or not from a chunk)"


def _answer_latency(opened: dict[str, KnowledgeBase], samples: Sequence[RagSample], latency: dict[str, list[float]],
                    progress: ProgressFn) -> None:
    names = list(opened)
    for n, sample in enumerate(samples):
        for name in (names if n % 2 == 0 else names[::-1]):
            started = time.perf_counter()
            opened[name].ask(sample.user_input)
            latency[name].append((time.perf_counter() - started) * 1000)
        progress("timing answers", n + 1, len(samples))


def peak_rss(kb_path: Path, variant: Variant, questions: Sequence[str], *, answers: bool) -> float | None:
    """Peak resident memory (MB) of a fresh process that opens the KB as ``variant`` and serves ``questions``
    (retrieval, or whole answers); None when the probe fails (logged)."""
    spec = {"kb": str(kb_path), "variant": variant.to_dict(), "questions": list(questions), "answers": answers}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        done = subprocess.run([sys.executable, "-m", "ragtune.loop.probe", json.dumps(spec)], capture_output=True,
                              text=True, timeout=1800, env=env, check=True)
        return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        log.warning("peak RSS probe of %s failed: %s %s", variant.label, exc, stderr[-2000:])
        return None
