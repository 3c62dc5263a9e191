"""The gate's latency: each question is timed several times per system and the fastest counts, so a burst of load
from another process (a test run, a bench) does not decide latency_p95 — it once failed a SciFact embedder
challenger at +12.5 % while an unrelated job shared the two cores."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from ragtune.evaluate.samples import RagSample
from ragtune.loop.evaluation import _retrieval

pytestmark = pytest.mark.unit


class SlowSometimes:
    """Retrieves in ~2 ms, except every ``every``-th call, which another process slowed to ~40 ms."""

    def __init__(self, every: int) -> None:
        self.every, self.calls = every, 0

    def retrieve(self, query: str, k: int) -> Any:
        self.calls += 1
        time.sleep(0.040 if self.every and self.calls % self.every == 0 else 0.002)
        return SimpleNamespace(hits=[])


def _p95(repeats: int) -> tuple[float, float, SlowSometimes]:
    opened: Any = {"champion": SlowSometimes(0), "challenger": SlowSometimes(2)}
    samples = [RagSample(user_input=f"question {i}", reference_context_ids=["c1"]) for i in range(20)]
    ids = [f"q{i}" for i in range(20)]
    items: dict[str, dict[str, dict[str, Any]]] = {n: {i: {"id": i, "excluded": {}} for i in ids} for n in opened}
    latency: dict[str, list[float]] = {"champion": [], "challenger": []}
    _retrieval(opened, samples, ids, [], items, latency, lambda *a: None, repeats=repeats)
    assert len(latency["champion"]) == len(latency["challenger"]) == 20  # one time per question: its fastest
    ordered = {n: sorted(v) for n, v in latency.items()}
    return ordered["champion"][18], ordered["challenger"][18], opened["challenger"]


def test_the_fastest_of_several_runs_counts() -> None:
    champion, challenger, system = _p95(repeats=3)
    assert system.calls == 60
    assert challenger < 20 and champion < 20  # ms: the slowed calls never decide, each question also ran unslowed


def test_one_run_each_lets_load_decide() -> None:
    champion, challenger, _ = _p95(repeats=1)
    assert challenger >= 40 > champion  # ms: what the guard saw before was the load, not the system
