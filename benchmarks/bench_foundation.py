"""Speed of the foundation: preprocessing, cell detection and plugin import.

Targets: preprocessing a 224x224 image < 5 ms, detection on a 640x480 field < 50 ms,
``import napari_leukemia`` well under 0.5 s. Run: ``python benchmarks/bench_foundation.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from timing import median_ms

from napari_leukemia.cells import detect_cells
from napari_leukemia.preprocess import document000_pipeline, grayscale, unsharp_mask
from napari_leukemia.roi import extract_roi
from napari_leukemia.synthetic import make_smear


def import_seconds(repeats: int = 5) -> float:
    code = (
        "import time; t = time.perf_counter(); import napari_leukemia; "
        "print(time.perf_counter() - t)"
    )
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(runs)


def main() -> None:
    small = make_smear(seed=0).image
    large = make_smear(seed=0, shape=(480, 640), cell_diameter=180).image
    rows = [
        ("grayscale 224x224", median_ms(lambda: grayscale(small)), 5.0),
        ("unsharp mask 224x224 (gray)", median_ms(lambda: unsharp_mask(grayscale(small))), 5.0),
        ("document 000 pipeline 224x224", median_ms(lambda: document000_pipeline(small)), 5.0),
        ("detect_cells 224x224", median_ms(lambda: detect_cells(small)), 50.0),
        ("detect_cells 640x480", median_ms(lambda: detect_cells(large), 20), 50.0),
        (
            "extract_roi 224 from 640x480",
            median_ms(lambda: extract_roi(large, (100, 100, 300, 300))),
            None,
        ),
    ]
    print(f"{'step':36s} {'median ms':>10s} {'target':>8s}")
    for name, ms, target in rows:
        mark = "" if target is None else ("ok" if ms < target else "SLOW")
        print(f"{name:36s} {ms:10.2f} {'' if target is None else f'<{target:g}':>8s} {mark}")
    seconds = import_seconds()
    print(
        f"{'import napari_leukemia':36s} {seconds * 1000:10.1f} {'<500':>8s} "
        f"{'ok' if seconds < 0.5 else 'SLOW'}"
    )


if __name__ == "__main__":
    main()
