"""The gate on constructed cases: it promotes only a reliable gain with every guard within tolerance; its
intervals are scipy.stats.bootstrap's; the same measurements and seed give the same verdict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ragtune.evaluate.rag import compare_runs
from ragtune.loop.gate import decide
from ragtune.loop.recipe import GateSection

pytestmark = pytest.mark.unit


def run(scores: dict[str, list[float]]) -> dict:
    """A measured system in compare_runs' shape: per-item scores paired by id."""
    n = len(next(iter(scores.values())))
    items = [{"id": f"q{i}", **{m: v[i] for m, v in scores.items()}} for i in range(n)]
    return {"metrics": {m: float(np.mean(v)) for m, v in scores.items()}, "items": items}


def verdict(champion, challenger, *, gate=None, system=None, seed=0, waived=None):
    comparison = compare_runs(run(challenger), run(champion), n_resamples=2000, seed=seed)
    return decide(gate or GateSection(target="ndcg@10", guards={}), comparison, system or {}, waived=waived)


def test_a_reliable_gain_is_promoted() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(80)
    result = verdict({"ndcg@10": base}, {"ndcg@10": np.clip(base + 0.1 + rng.normal(0, 0.02, 80), 0, 1)})
    assert result.promote and result.target["low"] > 0
    assert "above zero" in result.reasons[0]


def test_a_gain_whose_interval_holds_zero_is_rejected() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(40)
    noisy = np.clip(base + rng.normal(0.01, 0.3, 40), 0, 1)
    result = verdict({"ndcg@10": base}, {"ndcg@10": noisy})
    assert result.target["low"] <= 0 < result.target["high"] or result.target["high"] <= 0
    assert not result.promote and "not reliably higher" in result.reasons[0]


def test_identical_systems_are_rejected_with_a_point_interval() -> None:
    scores = {"ndcg@10": [1.0, 0.5, 0.0, 0.7]}
    result = verdict(scores, scores)
    assert not result.promote
    assert result.target["low"] == result.target["high"] == 0.0


def test_a_quality_guard_that_drops_more_than_its_tolerance_blocks_promotion() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(60)
    refusal = (rng.random(60) < 0.8).astype(float)
    worse = refusal.copy()
    worse[np.flatnonzero(refusal)[:5]] = 0.0  # five refusals lost: about 8 points
    gate = GateSection(target="ndcg@10", guards={"refusal_accuracy": 0.01})
    result = verdict({"ndcg@10": base, "refusal_accuracy": refusal},
                     {"ndcg@10": np.clip(base + 0.2, 0, 1), "refusal_accuracy": worse}, gate=gate)
    assert not result.promote
    assert [g.metric for g in result.guards if not g.ok] == ["refusal_accuracy"]
    assert any("guard refusal_accuracy dropped by" in r for r in result.reasons)
    # Within tolerance (one of 60 = 1.7 points against a tolerance of 2) it passes.
    slightly = refusal.copy()
    slightly[np.flatnonzero(refusal)[0]] = 0.0
    ok = verdict({"ndcg@10": base, "refusal_accuracy": refusal},
                 {"ndcg@10": np.clip(base + 0.2, 0, 1), "refusal_accuracy": slightly},
                 gate=GateSection(target="ndcg@10", guards={"refusal_accuracy": 0.02}))
    assert ok.promote


def test_cost_guards_compare_shares_and_can_be_waived() -> None:
    base = [0.2, 0.4, 0.6, 0.8] * 10
    better = [x + 0.15 for x in base]
    gate = GateSection(target="ndcg@10", guards={"latency_p95": 0.10, "peak_rss": 0.10})
    slow = {"latency_p95": {"champion": 100.0, "challenger": 115.0}, "peak_rss": {"champion": 900, "challenger": 950}}
    result = verdict({"ndcg@10": base}, {"ndcg@10": better}, gate=gate, system=slow)
    assert not result.promote
    failed = {g.metric: g for g in result.guards if not g.ok}
    assert list(failed) == ["latency_p95"] and failed["latency_p95"].change == pytest.approx(0.15)
    waived = verdict({"ndcg@10": base}, {"ndcg@10": better}, gate=gate, system=slow,
                     waived={"latency_p95": "the first reranker"})
    assert waived.promote
    assert next(g for g in waived.guards if g.metric == "latency_p95").note.startswith("waived")


def test_unmeasured_guards_are_reported_and_do_not_block() -> None:
    gate = GateSection(target="ndcg@10", guards={"faithfulness": 0.01, "peak_rss": 0.1})
    result = verdict({"ndcg@10": [0.1, 0.2, 0.3] * 10}, {"ndcg@10": [0.5, 0.6, 0.7] * 10}, gate=gate)
    assert result.promote
    assert {g.metric: g.note.split(":")[0] for g in result.guards} == {"faithfulness": "not measured",
                                                                      "peak_rss": "not measured"}


def test_an_unmeasured_target_never_promotes() -> None:
    gate = GateSection(target="answer_correctness", guards={})
    result = verdict({"ndcg@10": [0.1, 0.9]}, {"ndcg@10": [0.9, 0.9]}, gate=gate)
    assert not result.promote and "was not measured" in result.reasons[0]


def test_lower_is_better_targets_need_an_interval_below_zero() -> None:
    gate = GateSection(target="false_refusal_rate", guards={})
    base = [1.0, 0.0, 1.0, 1.0, 0.0] * 12
    fewer = [0.0 if i % 5 == 0 else x for i, x in enumerate(base)]
    assert verdict({"false_refusal_rate": base}, {"false_refusal_rate": fewer}, gate=gate).promote
    assert not verdict({"false_refusal_rate": fewer}, {"false_refusal_rate": base}, gate=gate).promote


def test_min_gain_raises_the_bar() -> None:
    base = [0.2, 0.4, 0.6, 0.8] * 10
    better = [x + 0.05 for x in base]
    assert verdict({"ndcg@10": base}, {"ndcg@10": better}).promote
    assert not verdict({"ndcg@10": base}, {"ndcg@10": better},
                       gate=GateSection(target="ndcg@10", guards={}, min_gain=0.1)).promote


def test_a_negative_min_gain_is_a_non_inferiority_margin() -> None:
    base = [0.2, 0.4, 0.6, 0.8] * 10
    slightly_worse = [x - 0.005 for x in base]
    much_worse = [x - 0.05 for x in base]
    margin = GateSection(target="ndcg@10", guards={}, min_gain=-0.01)
    assert not verdict({"ndcg@10": base}, {"ndcg@10": slightly_worse}).promote
    accepted = verdict({"ndcg@10": base}, {"ndcg@10": slightly_worse}, gate=margin)
    assert accepted.promote and accepted.reasons[0].endswith("above -0.0100 (non-inferiority margin)")
    assert not verdict({"ndcg@10": base}, {"ndcg@10": much_worse}, gate=margin).promote
    with pytest.raises(ValueError, match="min_gain"):
        GateSection(min_gain=-2)


def test_same_measurements_and_seed_give_the_same_verdict() -> None:
    rng = np.random.default_rng(9)
    base = rng.random(50)
    challenger = np.clip(base + rng.normal(0.03, 0.1, 50), 0, 1)
    first = verdict({"ndcg@10": base}, {"ndcg@10": challenger}, seed=4).to_dict()
    again = verdict({"ndcg@10": base}, {"ndcg@10": challenger}, seed=4).to_dict()
    assert first == again


@pytest.mark.parametrize("trial", range(4))
def test_the_gates_interval_is_scipys_paired_bootstrap(trial: int) -> None:
    """The CI the gate decides on equals scipy.stats.bootstrap's BCa interval for the paired mean difference."""
    rng = np.random.default_rng(trial)
    n = int(rng.integers(20, 200))
    champion = rng.random(n)
    challenger = np.clip(champion + rng.normal(0.02, 0.15, n), 0, 1)
    result = verdict({"ndcg@10": champion}, {"ndcg@10": challenger}, seed=trial)
    reference = stats.bootstrap((challenger, champion), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                                paired=True, vectorized=True, n_resamples=2000, confidence_level=0.95, method="BCa",
                                rng=np.random.default_rng(trial))
    assert result.target["low"] == pytest.approx(reference.confidence_interval.low, abs=1e-6)
    assert result.target["high"] == pytest.approx(reference.confidence_interval.high, abs=1e-6)
    assert result.promote == (reference.confidence_interval.low > 0)


@pytest.mark.parametrize(("target", "guards_ok", "kept"), [
    ({"metric": "ndcg@10", "measured": True, "low": -0.01, "high": 0.04}, True, True),     # not yet reliable
    ({"metric": "ndcg@10", "measured": True, "low": 0.0, "high": 0.0}, True, True),        # changed nothing yet
    ({"metric": "ndcg@10", "measured": True, "low": -0.09, "high": -0.02}, True, False),   # reliably worse
    ({"metric": "ndcg@10", "measured": True, "low": -0.01, "high": 0.04}, False, False),   # broke a guard
    ({"metric": "false_refusal_rate", "measured": True, "low": -0.03, "high": 0.01}, True, True),  # lower is better
    ({"metric": "false_refusal_rate", "measured": True, "low": 0.01, "high": 0.05}, True, False),
    ({"metric": "ndcg@10", "measured": False}, True, False),                               # nothing measured
])
def test_only_an_inconclusive_rejection_keeps_its_feedback(target: dict, guards_ok: bool, kept: bool) -> None:
    from ragtune.loop.gate import inconclusive

    verdict = {"promote": False, "reasons": [], "target": target,
               "guards": [{"metric": "latency_p95", "ok": True}, {"metric": "faithfulness", "ok": guards_ok}]}
    assert inconclusive(verdict) is kept
