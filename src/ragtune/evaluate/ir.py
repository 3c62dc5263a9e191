"""Retrieval metrics (nDCG, recall, MRR, precision) on BEIR/TREC runs, with trec_eval's semantics."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping

from ragtune.errors import ConfigError

#: One query's retrieved documents and their scores, as a retriever returns them.
QueryRun = Mapping[str, float]
#: One query's judged documents and their graded relevance (0 = judged not relevant).
QueryQrels = Mapping[str, int]

DEFAULT_METRICS = ("ndcg_cut_10", "recall_10", "recall_100", "recip_rank_10")

_METRIC = re.compile(r"(?P<name>ndcg_cut|recall|P|recip_rank)_(?P<k>[1-9][0-9]*)|(?P<whole>ndcg|recip_rank)")
_METRIC_FORMS = "ndcg, ndcg_cut_K, recall_K, P_K, recip_rank, recip_rank_K (K >= 1)"


def trec_order(scores: QueryRun) -> list[str]:
    """Rank documents the way trec_eval does: by score descending, equal scores by doc id descending."""
    # Two stable sorts: the secondary key first. Python compares str by code point, which is the
    # byte order of UTF-8 that trec_eval's strcmp uses.
    by_id = sorted(scores, reverse=True)
    return sorted(by_id, key=lambda doc_id: scores[doc_id], reverse=True)


def ndcg_at_k(scores: QueryRun, qrels: QueryQrels, k: int | None = 10) -> float:
    """nDCG@k with graded gains (the relevance value; negatives count as 0) and a log2(rank + 1) discount.

    ``k=None`` evaluates the whole ranking (trec_eval's ``ndcg``). 0 when nothing is relevant.
    """
    return _ndcg(trec_order(scores), qrels, None if k is None else _check_k(k))


def recall_at_k(scores: QueryRun, qrels: QueryQrels, k: int = 100) -> float:
    """Fraction of the relevant documents (relevance >= 1) found in the top k; 0 when none is relevant."""
    return _recall(trec_order(scores), qrels, _check_k(k))


def precision_at_k(scores: QueryRun, qrels: QueryQrels, k: int = 10) -> float:
    """Relevant documents in the top k divided by k, even when fewer than k were retrieved (as trec_eval)."""
    return _precision(trec_order(scores), qrels, _check_k(k))


def mrr_at_k(scores: QueryRun, qrels: QueryQrels, k: int | None = 10) -> float:
    """Reciprocal rank of the first relevant document (relevance >= 1) within the top k, else 0.

    ``k=None`` looks at the whole ranking (trec_eval's ``recip_rank``).
    """
    return _reciprocal_rank(trec_order(scores), qrels, None if k is None else _check_k(k))


def per_query(
    run: Mapping[str, QueryRun],
    qrels: Mapping[str, QueryQrels],
    metrics: Iterable[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Score every query of ``qrels``: ``{query_id: {metric: value}}``.

    Metric names follow trec_eval: ``ndcg``, ``ndcg_cut_K``, ``recall_K``, ``P_K``, ``recip_rank``
    and ``recip_rank_K`` (MRR@K). A query missing from ``run`` scores 0 on every metric; queries of
    ``run`` absent from ``qrels`` are ignored.
    """
    scorers = {metric: _parse_metric(metric) for metric in metrics}
    results: dict[str, dict[str, float]] = {}
    for query_id, judged in qrels.items():
        ranked = trec_order(run.get(query_id, {}))
        results[query_id] = {metric: scorer(ranked, judged) for metric, scorer in scorers.items()}
    return results


def evaluate(
    run: Mapping[str, QueryRun],
    qrels: Mapping[str, QueryQrels],
    metrics: Iterable[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean of each metric over the queries of ``qrels`` (see ``per_query``); 0.0 when ``qrels`` is empty."""
    metrics = list(metrics)
    scores = per_query(run, qrels, metrics)
    if not scores:
        return {metric: 0.0 for metric in metrics}
    return {metric: math.fsum(row[metric] for row in scores.values()) / len(scores) for metric in metrics}


def _parse_metric(metric: str) -> Callable[[list[str], QueryQrels], float]:
    match = _METRIC.fullmatch(metric)
    if match is None:
        raise ConfigError(f"unknown metric '{metric}' — use one of: {_METRIC_FORMS}")
    if match["whole"] is not None:
        whole = _ndcg if match["whole"] == "ndcg" else _reciprocal_rank
        return lambda ranked, judged: whole(ranked, judged, None)
    name, k = match["name"], int(match["k"])
    scorer = {"ndcg_cut": _ndcg, "recall": _recall, "P": _precision, "recip_rank": _reciprocal_rank}[name]
    return lambda ranked, judged: scorer(ranked, judged, k)


def _check_k(k: int) -> int:
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    return k


def _ndcg(ranked: list[str], qrels: QueryQrels, k: int | None) -> float:
    ideal_gains = sorted((rel for rel in qrels.values() if rel > 0), reverse=True)[:k]
    if not ideal_gains:
        return 0.0
    dcg = math.fsum(
        max(qrels.get(doc_id, 0), 0) / math.log2(rank + 1) for rank, doc_id in enumerate(ranked[:k], start=1)
    )
    ideal = math.fsum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains, start=1))
    return dcg / ideal


def _recall(ranked: list[str], qrels: QueryQrels, k: int) -> float:
    relevant = sum(1 for rel in qrels.values() if rel >= 1)
    if relevant == 0:
        return 0.0
    return sum(1 for doc_id in ranked[:k] if qrels.get(doc_id, 0) >= 1) / relevant


def _precision(ranked: list[str], qrels: QueryQrels, k: int) -> float:
    return sum(1 for doc_id in ranked[:k] if qrels.get(doc_id, 0) >= 1) / k


def _reciprocal_rank(ranked: list[str], qrels: QueryQrels, k: int | None) -> float:
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if qrels.get(doc_id, 0) >= 1:
            return 1.0 / rank
    return 0.0
