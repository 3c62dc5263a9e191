"""Paired bootstrap confidence intervals for the difference of two systems' per-item scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from ragtune.errors import ConfigError

Method = Literal["bca", "percentile"]
_NORMAL = NormalDist()


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``candidate - baseline`` over paired items, with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    method: str
    n_resamples: int

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (the candidate is reliably better, or reliably worse)."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def paired_bootstrap(
    candidate: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 10_000,
    method: Method = "bca", seed: int = 0,
) -> PairedDifference:
    """Bootstrap CI of ``mean(candidate - baseline)``, resampling the item pairs together.

    Resamples exactly as ``scipy.stats.bootstrap((candidate, baseline), mean-difference, paired=True,
    rng=numpy.random.default_rng(seed))`` does, and computes the same BCa (bias-corrected, accelerated) or
    percentile interval, so the numbers agree with scipy's to rounding. Unlike scipy, a degenerate
    bootstrap distribution (every resample equal, e.g. two identical runs) gives the point interval
    [mean, mean] instead of NaN, and the result is deterministic for a given ``seed``.
    """
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ConfigError(f"paired_bootstrap needs two equally long lists of scores, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ConfigError("paired_bootstrap needs at least one pair of scores")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ConfigError("paired_bootstrap: scores must be finite numbers (no NaN or infinity)")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    if method not in ("bca", "percentile"):
        raise ConfigError(f"unknown bootstrap method {method!r} — use 'bca' or 'percentile'")
    n = a.size
    mean = float(a.mean() - b.mean())
    # Indices drawn as scipy draws them for a paired statistic: one (n_resamples, n) block.
    index = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    resampled = a[index].mean(axis=1) - b[index].mean(axis=1)
    alpha = (1 - confidence) / 2
    low_q, high_q = alpha, 1 - alpha
    if method == "bca":
        bca = _bca_quantiles(a, b, mean, resampled, alpha)
        if bca is None:
            return PairedDifference(mean, mean, mean, n, confidence, method, n_resamples)
        low_q, high_q = bca
    low, high = np.quantile(resampled, [low_q, high_q])
    return PairedDifference(mean, float(low), float(high), n, confidence, method, n_resamples)


def _bca_quantiles(
    a: np.ndarray, b: np.ndarray, mean: float, resampled: np.ndarray, alpha: float
) -> tuple[float, float] | None:
    """The BCa interval's quantile levels (Efron & Tibshirani 14.3, 15.36), or None when undefined."""
    share = (np.count_nonzero(resampled < mean) + np.count_nonzero(resampled <= mean)) / (2 * resampled.size)
    if not 0 < share < 1:
        return None
    z0 = _NORMAL.inv_cdf(share)
    n = a.size
    if n < 2:
        return None
    # Jackknife: the statistic with each pair left out in turn.
    jack = (a.sum() - a) / (n - 1) - (b.sum() - b) / (n - 1)
    u = (n - 1) * (jack.mean() - jack)
    spread = float(np.sum(u**2) / n**2)
    if spread == 0:
        return None
    accel = float(np.sum(u**3) / n**3) / (6 * spread**1.5)
    z_low, z_high = _NORMAL.inv_cdf(alpha), _NORMAL.inv_cdf(1 - alpha)
    levels = []
    for z in (z_low, z_high):
        shifted = z0 + z
        levels.append(_NORMAL.cdf(z0 + shifted / (1 - accel * shifted)))
    low, high = levels
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def roc_auc(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties count
    half), i.e. the Mann-Whitney U statistic over n_pos × n_neg. How well a judge's scores separate labels."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.ndim != 1 or s.shape != y.shape:
        raise ConfigError(f"roc_auc needs one label per score, got {s.shape} scores and {y.shape} labels")
    positives, negatives = s[y], s[~y]
    if positives.size == 0 or negatives.size == 0:
        raise ConfigError("roc_auc needs at least one positive and one negative label")
    above = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((above + 0.5 * ties) / (positives.size * negatives.size))
