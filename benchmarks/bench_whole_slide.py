"""A 10k x 10k whole-slide tile through ``batch``: cells found, time and peak RSS.

Writes a synthetic 10,000 x 10,000 RGB TIFF (512 px tiles, zlib) into a temporary
folder, tile by tile, from the package's smear generator: one 375 x 375 field repeated
(so the stain is the same everywhere, as on one slide) with every second row of fields
shifted by half a field, so cells straddle the detector's tiles. Then `run_batch` runs
the tiled path on it (detect tile by tile, classify + Grad-CAM per cell group, store
written chunk by chunk) on a LocalCluster of one worker process. Printed: cells found
(and the ground-truth count of the pattern), the run time, and the peak RSS of
this process and of the worker (``ru_maxrss`` on the worker, and a psutil sample every
0.2 s). Target: peak RSS < 2 GB.

Run: ``python benchmarks/bench_whole_slide.py [--side 10000] [--methods grad_cam]``
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from napari_leukemia.batch import run_batch  # noqa: E402
from napari_leukemia.batch.cluster import dask_client  # noqa: E402
from napari_leukemia.synthetic import make_smear  # noqa: E402
from napari_leukemia.tiles import LARGE_PIXELS  # noqa: E402

FIELD = 375
TILE = 512


def _pattern_tile(field: np.ndarray, top: int, left: int) -> np.ndarray:
    """The slide's pixels [top:top+TILE, left:left+TILE] (rows of fields shifted by
    half a field every second row)."""
    rows = np.arange(top, top + TILE)
    cols = np.arange(left, left + TILE)[None, :] + (rows[:, None] // FIELD % 2) * (FIELD // 2)
    return field[rows[:, None] % FIELD, cols % FIELD]


def _whole_cells(boxes, side: int) -> int:
    """How many copies of the field's cells lie wholly inside the slide."""
    count = 0
    for field_row in range(-(-side // FIELD)):
        shift = (field_row % 2) * (FIELD // 2)
        for r0, c0, r1, c1 in boxes:
            top, bottom = field_row * FIELD + r0, field_row * FIELD + r1
            lefts = np.arange(c0 - shift - FIELD, side, FIELD)
            inside = (lefts >= 0) & (lefts + (c1 - c0) <= side)
            count += int(inside.sum()) if bottom <= side and top >= 0 else 0
    return count


def write_slide(path: Path, side: int) -> int:
    """Write the synthetic slide; return how many drawn cells lie wholly inside it."""
    import tifffile

    smear = make_smear(seed=0, shape=(FIELD, FIELD), n_leukocytes=(4, 5))
    tiles = (
        _pattern_tile(smear.image, top, left)
        for top in range(0, side, TILE)
        for left in range(0, side, TILE)
    )
    tifffile.imwrite(path, tiles, shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE),
                     compression="zlib", photometric="rgb")  # fmt: skip
    return _whole_cells(smear.cell_bboxes, side)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Sampler:
    """Largest RSS seen, every 0.2 s, of the given process ids (psutil)."""

    def __init__(self, pids):
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.2):
            for proc in self.procs:
                try:
                    self.peak_mb = max(self.peak_mb, proc.memory_info().rss / 2**20)
                except Exception:  # noqa: BLE001 - a process that ended
                    continue

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10_000)
    parser.add_argument("--methods", default="grad_cam")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=LARGE_PIXELS,
        help="images above this take the tiled path (lower it for a small --side)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "slide.tif"
        start = time.perf_counter()
        expected = write_slide(slide, args.side)
        written = time.perf_counter() - start
        print(f"slide: {args.side} x {args.side} RGB, {slide.stat().st_size / 2**20:.0f} MB "
              f"TIFF (zlib, {TILE} px tiles), written in {written:.1f} s; {expected} drawn "
              "cells lie wholly inside it")  # fmt: skip
        with dask_client(workers=1) as client:
            client.wait_for_workers(1)
            pids = list(client.run(os.getpid).values())
            start = time.perf_counter()
            with _Sampler(pids) as sampler:
                report = run_batch([slide], Path(tmp) / "slide.zarr",
                                   methods=args.methods.split(","),
                                   scheduler=client.scheduler.address, progress=False,
                                   max_pixels=args.max_pixels)  # fmt: skip
            seconds = time.perf_counter() - start
            worker_mb = max(client.run(_peak_rss_mb).values())
        print(f"cells found: {report.cells} (analysed {report.analysed}, failed "
              f"{report.failed}) in {seconds:.1f} s = {report.cells / seconds:.1f} cells/s "
              f"(detect + classify + {args.methods} + store; model load included)")  # fmt: skip
        print(
            f"peak RSS: worker {worker_mb:.0f} MB (ru_maxrss), {sampler.peak_mb:.0f} MB "
            f"(psutil samples); this process {_peak_rss_mb():.0f} MB; target < 2048 MB"
        )
        if report.failed:
            print(report.tables["errors"].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
