"""Retrieval metrics: parity with pytrec_eval on random runs, plus hand-computed cases."""

from __future__ import annotations

import math
import random

import pytest
import pytrec_eval

from ragtune.errors import ConfigError
from ragtune.evaluate.ir import (
    evaluate,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    precision_at_k,
    recall_at_k,
    trec_order,
)

pytestmark = pytest.mark.unit

PYTREC_MEASURES = {"ndcg", "ndcg_cut.1,3,5,10,100", "recall.1,5,10,100", "P.1,5,10", "recip_rank"}
OUR_METRICS = [
    "ndcg",
    "ndcg_cut_1",
    "ndcg_cut_3",
    "ndcg_cut_5",
    "ndcg_cut_10",
    "ndcg_cut_100",
    "recall_1",
    "recall_5",
    "recall_10",
    "recall_100",
    "P_1",
    "P_5",
    "P_10",
    "recip_rank",
]


def random_case(seed: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """A run and qrels with graded relevance, many score ties, numeric-looking ids and missing queries."""
    rng = random.Random(seed)
    # Ids like "9" and "10" sort differently as strings and numbers; "é" checks non-ASCII order.
    pool = [f"d{i}" for i in range(40)] + [str(i) for i in (1, 2, 9, 10, 11, 100)] + ["é1", "e1", "D3"]
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(40):
        query_id = f"q{q}"
        if rng.random() < 0.85:
            judged = rng.sample(pool, rng.randint(1, 12))
            grades = [-1, 0, 0, 1, 1, 2, 3] if rng.random() < 0.3 else [0, 1, 1, 2]
            qrels[query_id] = {doc_id: rng.choice(grades) for doc_id in judged}
        if rng.random() < 0.85:
            retrieved = rng.sample(pool, rng.randint(0, 30))
            # Coarse scores make ties common; sometimes integers, sometimes floats.
            if rng.random() < 0.5:
                run[query_id] = {doc_id: float(rng.randint(0, 4)) for doc_id in retrieved}
            else:
                run[query_id] = {doc_id: round(rng.uniform(-1, 1), 1) for doc_id in retrieved}
    run["only_in_run"] = {"d1": 1.0}
    return run, qrels


def pytrec_per_query(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    # pytrec_eval drops queries absent from the run; give them an empty ranking so they score 0 (trec_eval -c).
    full_run = {query_id: run.get(query_id, {}) for query_id in qrels}
    return pytrec_eval.RelevanceEvaluator(qrels, PYTREC_MEASURES).evaluate(full_run)


class TestParityWithPytrecEval:
    @pytest.mark.parametrize("seed", range(8))
    def test_per_query(self, seed: int) -> None:
        run, qrels = random_case(seed)
        expected = pytrec_per_query(run, qrels)
        ours = per_query(run, qrels, OUR_METRICS)
        assert set(ours) == set(qrels) == set(expected)
        for query_id, row in ours.items():
            for metric in OUR_METRICS:
                assert row[metric] == pytest.approx(expected[query_id][metric], abs=1e-6), (query_id, metric)

    @pytest.mark.parametrize("seed", range(8))
    def test_means(self, seed: int) -> None:
        run, qrels = random_case(seed)
        expected = pytrec_per_query(run, qrels)
        ours = evaluate(run, qrels, OUR_METRICS)
        for metric in OUR_METRICS:
            mean = math.fsum(row[metric] for row in expected.values()) / len(expected)
            assert ours[metric] == pytest.approx(mean, abs=1e-6), metric

    @pytest.mark.parametrize("seed", range(8))
    @pytest.mark.parametrize("k", [1, 3, 10])
    def test_mrr_at_k(self, seed: int, k: int) -> None:
        # trec_eval's recip_rank has no cutoff: evaluate it on each run truncated to its top k.
        run, qrels = random_case(seed)
        truncated = {
            query_id: {doc_id: scores[doc_id] for doc_id in trec_order(scores)[:k]} for query_id, scores in run.items()
        }
        expected = pytrec_per_query(truncated, qrels)
        ours = per_query(run, qrels, [f"recip_rank_{k}"])
        for query_id in qrels:
            assert ours[query_id][f"recip_rank_{k}"] == pytest.approx(expected[query_id]["recip_rank"], abs=1e-6)


class TestHandComputed:
    # Scores a=1, b=1, c=2, d=1: trec_eval ranks c first, then the ties by doc id descending: d, b, a.
    RUN = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 1.0}
    QRELS = {"a": 1, "b": 2, "c": 0, "e": 1}

    def test_trec_order_breaks_ties_by_doc_id_descending(self) -> None:
        assert trec_order(self.RUN) == ["c", "d", "b", "a"]
        assert trec_order({"9": 0.5, "10": 0.5, "x": 0.7}) == ["x", "9", "10"]

    def test_ndcg(self) -> None:
        # Ranking c(0) d(0) b(2) a(1): DCG@10 = 2/log2(4) + 1/log2(5) = 1 + 0.430677 = 1.430677
        # Ideal gains 2, 1, 1: IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.630930 + 0.5 = 3.130930
        expected = (1 + 1 / math.log2(5)) / (2 + 1 / math.log2(3) + 0.5)
        assert ndcg_at_k(self.RUN, self.QRELS, 10) == pytest.approx(expected)
        assert ndcg_at_k(self.RUN, self.QRELS, None) == pytest.approx(expected)
        # @3: DCG = 2/log2(4) = 1; IDCG@3 is the same 3.130930.
        assert ndcg_at_k(self.RUN, self.QRELS, 3) == pytest.approx(1 / (2 + 1 / math.log2(3) + 0.5))
        assert ndcg_at_k(self.RUN, self.QRELS, 2) == 0.0

    def test_recall(self) -> None:
        # Relevant: a, b, e (c has relevance 0). Top 3 = c, d, b -> 1/3; top 10 finds a, b -> 2/3.
        assert recall_at_k(self.RUN, self.QRELS, 3) == pytest.approx(1 / 3)
        assert recall_at_k(self.RUN, self.QRELS, 10) == pytest.approx(2 / 3)

    def test_mrr(self) -> None:
        # First relevant document is b at rank 3.
        assert mrr_at_k(self.RUN, self.QRELS, 10) == pytest.approx(1 / 3)
        assert mrr_at_k(self.RUN, self.QRELS, 2) == 0.0
        assert mrr_at_k(self.RUN, self.QRELS, None) == pytest.approx(1 / 3)

    def test_precision_divides_by_k(self) -> None:
        # 2 relevant among 4 retrieved, but P@10 divides by 10.
        assert precision_at_k(self.RUN, self.QRELS, 10) == pytest.approx(0.2)
        assert precision_at_k(self.RUN, self.QRELS, 4) == pytest.approx(0.5)

    def test_negative_relevance_is_zero_gain(self) -> None:
        # DCG = 0 (a: -1 -> 0) + 2/log2(3); IDCG = 2 -> 0.630930
        assert ndcg_at_k({"a": 2.0, "b": 1.0}, {"a": -1, "b": 2}, 10) == pytest.approx(1 / math.log2(3))

    def test_nothing_relevant_scores_zero(self) -> None:
        qrels = {"a": 0}
        assert ndcg_at_k({"a": 1.0}, qrels) == 0.0
        assert recall_at_k({"a": 1.0}, qrels) == 0.0
        assert mrr_at_k({"a": 1.0}, qrels) == 0.0

    def test_evaluate_counts_missing_queries_as_zero(self) -> None:
        # q1 is perfect (1.0), q2 has no run entry (0.0): mean 0.5. q3 is not judged and is ignored.
        run = {"q1": {"a": 1.0}, "q3": {"z": 1.0}}
        qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
        assert evaluate(run, qrels) == pytest.approx(
            {"ndcg_cut_10": 0.5, "recall_10": 0.5, "recall_100": 0.5, "recip_rank_10": 0.5}
        )
        assert per_query(run, qrels, ["recall_10"]) == {"q1": {"recall_10": 1.0}, "q2": {"recall_10": 0.0}}

    def test_empty_qrels(self) -> None:
        assert evaluate({}, {}, ["ndcg_cut_10"]) == {"ndcg_cut_10": 0.0}


class TestValidation:
    @pytest.mark.parametrize("metric", ["ndcg@10", "recall", "P", "ndcg_10", "recall_0", "map", "ndcg_cut_"])
    def test_unknown_metric(self, metric: str) -> None:
        with pytest.raises(ConfigError, match=f"unknown metric '{metric}' — use one of: ndcg, ndcg_cut_K"):
            evaluate({}, {"q": {"a": 1}}, [metric])

    @pytest.mark.parametrize("k", [0, -1])
    def test_bad_k(self, k: int) -> None:
        with pytest.raises(ConfigError, match="k must be >= 1"):
            recall_at_k({"a": 1.0}, {"a": 1}, k)
