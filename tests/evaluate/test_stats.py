"""Paired bootstrap against scipy.stats.bootstrap (same resamples, same BCa and percentile intervals), its
degenerate cases, and ROC AUC against the Mann-Whitney U statistic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ragtune.errors import ConfigError
from ragtune.evaluate.stats import paired_bootstrap, roc_auc

pytestmark = pytest.mark.unit


def _scipy(a: np.ndarray, b: np.ndarray, method: str, seed: int, n: int, confidence: float) -> tuple[float, float]:
    result = stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True, vectorized=True,
                             n_resamples=n, confidence_level=confidence, method=method,
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@pytest.mark.parametrize("method", ["bca", "percentile"])
@pytest.mark.parametrize("trial", range(6))
def test_agrees_with_scipy_on_random_scores(method: str, trial: int) -> None:
    rng = np.random.default_rng(100 + trial)
    n = int(rng.integers(5, 300))
    # Metric-like scores: continuous, binary, and mostly-tied.
    a = [rng.random(n), (rng.random(n) < 0.6).astype(float), np.round(rng.random(n) * 4) / 4][trial % 3]
    b = np.clip(a - rng.normal(0.05, 0.2, n), 0, 1)
    confidence = [0.95, 0.9, 0.99][trial % 3]
    ours = paired_bootstrap(a, b, method=method, seed=trial, n_resamples=3000, confidence=confidence)
    low, high = _scipy(a, b, "BCa" if method == "bca" else "percentile", trial, 3000, confidence)
    assert ours.low == pytest.approx(low, abs=1e-9) and ours.high == pytest.approx(high, abs=1e-9)
    assert ours.mean == pytest.approx(float(a.mean() - b.mean()))
    assert ours.low <= ours.mean <= ours.high


def test_identical_runs_give_a_point_interval_not_nan() -> None:
    scores = [1.0, 0.0, 0.5, 1.0]
    same = paired_bootstrap(scores, scores)
    assert (same.mean, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    one = paired_bootstrap([1.0], [0.0])
    assert (one.low, one.high) == (1.0, 1.0) and one.significant


def test_a_clear_improvement_is_significant_and_deterministic() -> None:
    rng = np.random.default_rng(3)
    base = (rng.random(200) < 0.5).astype(float)
    better = np.maximum(base, (rng.random(200) < 0.3).astype(float))
    first = paired_bootstrap(better, base, seed=5)
    assert first.significant and first.low > 0
    assert paired_bootstrap(better, base, seed=5) == first
    assert first.to_dict()["significant"] is True


@pytest.mark.parametrize(("a", "b", "kwargs", "message"), [
    ([1.0, 2.0], [1.0], {}, "equally long"),
    ([], [], {}, "at least one"),
    ([float("nan")], [0.0], {}, "finite"),
    ([1.0], [0.0], {"confidence": 1.5}, "confidence"),
    ([1.0], [0.0], {"method": "basic"}, "method"),
])
def test_bad_input_is_refused(a, b, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        paired_bootstrap(a, b, **kwargs)


def test_roc_auc_is_the_mann_whitney_share() -> None:
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(80), 1)
    labels = rng.random(80) < 0.4
    u = stats.mannwhitneyu(scores[labels], scores[~labels]).statistic
    assert roc_auc(scores, labels) == pytest.approx(u / (labels.sum() * (~labels).sum()))
    with pytest.raises(ConfigError, match="positive and one negative"):
        roc_auc([0.1, 0.2], [1, 1])
