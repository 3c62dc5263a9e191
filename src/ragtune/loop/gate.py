"""The gate: a challenger replaces its champion only when its target metric improves with a paired bootstrap CI
above zero on the frozen eval set and no guard metric regresses beyond its tolerance.

A pure function of the measurements, so the same measurements give the same verdict; the intervals come from
``evaluate.compare_runs`` (``evaluate.stats.paired_bootstrap``, seeded). Quality guards compare means (the drop
must stay within ``tolerance`` points); cost guards (latency_p95, peak_rss) compare the challenger's cost with
the champion's (at most ``tolerance`` more, as a share). A guard nothing measured (no eval question counts
towards it) is reported as such and does not block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ragtune.loop.recipe import LOWER_IS_BETTER, GateSection, metric_kind


@dataclass
class GuardCheck:
    """One guard: both systems' values, the change and whether it is within tolerance."""

    metric: str
    champion: float | None
    challenger: float | None
    change: float | None
    tolerance: float
    unit: str  # "points" (a drop in the metric) or "share" (a rise in cost)
    ok: bool
    note: str = ""


@dataclass
class Verdict:
    """The gate's decision and everything it rests on."""

    promote: bool
    reasons: list[str]
    target: dict[str, Any]
    guards: list[GuardCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": self.reasons, "target": self.target,
                "guards": [asdict(g) for g in self.guards]}


def inconclusive(verdict: dict[str, Any]) -> bool:
    """Whether a rejection says only "not yet": the target was measured, its interval does not lie wholly on the
    side of a loss (a batch too small to change anything, CI 0 … 0, is "not yet" too), and every guard held. A
    challenger reliably worse, or one that broke a guard, is not."""
    target = verdict.get("target") or {}
    if not target.get("measured"):
        return False
    could_gain = target["low"] <= 0 if target["metric"] in LOWER_IS_BETTER else target["high"] >= 0
    return bool(could_gain) and all(g.get("ok", True) for g in verdict.get("guards", []))


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def decide(gate: GateSection, comparison: Mapping[str, Any], system: Mapping[str, Mapping[str, float]],
           *, confidence: float = 0.95, waived: Mapping[str, str] | None = None) -> Verdict:
    """The verdict for one challenger. ``comparison``: ``compare_runs``' per-metric paired differences
    (challenger − champion); ``system``: the system metrics of both (``{"latency_p95": {"champion": ..,
    "challenger": ..}}``); ``waived``: guards that do not apply to this pair, with the reason (reported, not
    gated)."""
    metrics = comparison.get("metrics", {})
    reasons: list[str] = []
    name = gate.target
    found = metrics.get(name)
    if found is None:
        target: dict[str, Any] = {"metric": name, "measured": False}
        reasons.append(f"{name} was not measured: no eval question counts towards it (see the eval set)")
        improved = False
    else:
        lower = name in LOWER_IS_BETTER
        bound = -found["high"] if lower else found["low"]
        improved = bound > gate.min_gain
        target = {"metric": name, "measured": True, "champion": found["baseline"], "challenger": found["current"],
                  "difference": found["difference"], "low": found["low"], "high": found["high"], "n": found["n"],
                  "confidence": confidence, "min_gain": gate.min_gain}
        interval = f"{confidence:.0%} CI {_signed(found['low'])} … {_signed(found['high'])}"
        if improved:
            margin = "zero" if not gate.min_gain else _signed(-gate.min_gain if lower else gate.min_gain)
            reasons.append(f"{name} {_signed(found['difference'])} ({interval}, n={found['n']}): "
                           f"{'below' if lower else 'above'} {margin}"
                           + (" (non-inferiority margin)" if gate.min_gain < 0 else ""))
        else:
            reasons.append(f"{name} {_signed(found['difference'])} ({interval}, n={found['n']}): not reliably "
                           f"{'lower' if lower else 'higher'} than the champion's")
    checks = [_guard(metric, tolerance, metrics, system) for metric, tolerance in gate.guards.items()]
    for check in checks:
        if waived and check.metric in waived:
            check.ok, check.note = True, f"waived: {waived[check.metric]}"
    for check in checks:
        if not check.ok:
            what = (f"rose by {check.change:.1%} (tolerance {check.tolerance:.0%})" if check.unit == "share"
                    else f"dropped by {abs(check.change or 0):.4f} (tolerance {check.tolerance:.4f})")
            reasons.append(f"guard {check.metric} {what}")
    promote = improved and all(c.ok for c in checks)
    return Verdict(promote=promote, reasons=reasons, target=target, guards=checks)


def _guard(metric: str, tolerance: float, metrics: Mapping[str, Any],
           system: Mapping[str, Mapping[str, float]]) -> GuardCheck:
    if metric_kind(metric) == "system":
        values = system.get(metric)
        if not values or values.get("champion") in (None, 0) or values.get("challenger") is None:
            return GuardCheck(metric, None, None, None, tolerance, "share", True, "not measured")
        champion, challenger = float(values["champion"]), float(values["challenger"])
        change = challenger / champion - 1
        return GuardCheck(metric, champion, challenger, round(change, 4), tolerance, "share",
                          change <= tolerance + 1e-12)
    found = metrics.get(metric)
    if found is None:
        return GuardCheck(metric, None, None, None, tolerance, "points", True,
                          "not measured: no eval question counts towards it")
    change = float(found["difference"])
    drop = change if metric in LOWER_IS_BETTER else -change
    return GuardCheck(metric, found["baseline"], found["current"], round(change, 6), tolerance, "points",
                      drop <= tolerance + 1e-12)
