"""Shared timing helper for the benchmark scripts."""

from __future__ import annotations

import statistics
import time


def median_ms(function, repeats: int = 50) -> float:
    """Median wall time of `function()` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
