"""Repeat-and-take-the-median timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 5, min_time_s: float = 0.2) -> float:
    """Median wall time of one call of ``fn`` over ``repeats`` rounds of at least ``min_time_s``."""
    fn()  # warm up
    times = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        times.append(elapsed / calls)
    return statistics.median(times)


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by rank, NaN when there are none.

    >>> percentile(range(1, 101), 99)
    100.0
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))])
