"""Stage timings, as reported in search results and answers."""

from __future__ import annotations

import time


def elapsed_ms(start: float, digits: int = 1) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading), rounded to ``digits``."""
    return round((time.perf_counter() - start) * 1000, digits)
