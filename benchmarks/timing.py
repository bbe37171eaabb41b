"""Timing helper of the benchmark scripts (the median of repeated runs after a warm-up)."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))
