"""Shared timing helpers for the benchmark scripts.

`ratio_ms` times a reference and a candidate alternately in one run, so a machine whose
load changes during the run (other jobs on 2 cores) shifts both alike; the ratio is the
median of the per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "all4"


def median_ms(function, repeats: int = 50) -> float:
    """Median wall time of `function()` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _once(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def ratio_ms(reference, candidate, repeats: int = 30) -> tuple[float, float, float]:
    """(reference ms, candidate ms, candidate / reference), timed alternately.

    Each round times the reference, the candidate, and the reference again; the
    round's ratio is the candidate over the mean of its two references.
    """
    reference()
    candidate()
    refs, cands, ratios = [], [], []
    for _ in range(repeats):
        before = _once(reference)
        cand = _once(candidate)
        after = _once(reference)
        ref = 0.5 * (before + after)
        refs.append(ref)
        cands.append(cand)
        ratios.append(cand / ref)
    return statistics.median(refs), statistics.median(cands), statistics.median(ratios)


def real_field():
    """(224x224 RGB field, description): the first all4 field, else a synthetic smear."""
    from napari_leukemia.images import read_image

    files = sorted(REAL_DATA.glob("*/*.jpg")) if REAL_DATA.is_dir() else []
    if files:
        return read_image(files[0]), f"real field {files[0].parent.name}/{files[0].name}"
    from napari_leukemia.synthetic import make_smear

    return make_smear(seed=0).image, "synthetic smear (shared/data not found)"
