"""The memory guard's probe measures the served system alone, not the process that starts it (Linux keeps
ru_maxrss across exec, so a probe started by the loop after training reported the loop's 16 GB for every system)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragtune.loop.evaluation import Variant, peak_rss


def own_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.integration
def test_the_probe_does_not_report_its_parents_memory(handbook_kb: Path) -> None:
    ballast = np.ones(int(2.5e9) // 8)  # 2.5 GB resident in this (parent) process while the probe starts
    assert own_rss_mb() > 2500
    measured = peak_rss(handbook_kb, Variant("champion"), ["How long is sick leave?"] * 3, answers=False)
    assert measured is not None and 100 < measured < 2000, measured
    del ballast
