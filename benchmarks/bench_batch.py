"""Throughput of ``batch``: cells per second with 1 and 2 worker processes.

For each method (classify + Grad-CAM, classify + LRP-ε) and each worker count, a
LocalCluster of that many single-threaded worker processes is started and warmed up
(TensorFlow and the model loaded, analyzers compiled) on a few fields, then `run_batch`
analyses the real fields into a fresh store in a temporary folder (detect, classify,
explain, write). Printed: cells/s and images/s of the warm run, the end-to-end time
including the cluster start, the 2-vs-1 worker scaling ratio, and each worker's peak
RSS. The target is a scaling ratio >= 1.7 on 2 cores; other jobs on the machine lower it.

``--reopen N`` instead builds a store of N images (one real field's results written N
times, no Dask) and times how long the napari reader takes to return one image's
layers with their data read (target < 1 s for N = 1000).

Run: ``python benchmarks/bench_batch.py [--fields 200] [--methods grad_cam,lrp_epsilon]``
or ``python benchmarks/bench_batch.py --reopen 1000``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import REAL_DATA  # noqa: E402

from napari_leukemia.batch import run_batch  # noqa: E402
from napari_leukemia.batch.cluster import dask_client  # noqa: E402


def real_fields(n: int) -> list[Path]:
    """`n` fields of all4, taken evenly from each class folder (sorted names)."""
    folders = sorted(p for p in REAL_DATA.iterdir() if p.is_dir())
    per_class = [sorted(f.glob("*.jpg")) for f in folders]
    picked, i = [], 0
    while len(picked) < n and any(i < len(files) for files in per_class):
        picked += [files[i] for files in per_class if i < len(files)]
        i += 1
    return picked[:n]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fields: list[Path], method: str, workers: int, tmp: Path) -> dict:
    """One warm timed run; returns cells/s, images/s, times and worker peak RSS."""
    start = time.perf_counter()
    with dask_client(workers=workers) as client:
        address = client.scheduler.address
        client.wait_for_workers(workers)
        warm = fields[: 4 * workers]
        run_batch(warm, tmp / f"warm-{method}-{workers}.zarr", methods=[method],
                  scheduler=address, progress=False)  # fmt: skip
        ready = time.perf_counter()
        report = run_batch(fields, tmp / f"{method}-{workers}.zarr", methods=[method],
                           scheduler=address, progress=False)  # fmt: skip
        seconds = time.perf_counter() - ready
        rss = client.run(_peak_rss_mb)
    return {
        "cells": report.cells,
        "images": report.analysed,
        "failed": report.failed,
        "seconds": seconds,
        "end_to_end": time.perf_counter() - start,
        "cells_per_s": report.cells / seconds,
        "images_per_s": report.analysed / seconds,
        "rss_mb": sorted(rss.values()),
    }


def reopen(n: int, tmp: Path) -> None:
    """Time `read_store` on one image of an `n`-image store (data read into memory)."""
    import numpy as np

    from napari_leukemia.batch.analysis import Job, analyse
    from napari_leukemia.batch.reader import read_store
    from napari_leukemia.batch.store import BatchStore
    from napari_leukemia.explain.methods import resolve_params

    field = real_fields(1)[0]
    params = {m: resolve_params(m, {}) for m in ("grad_cam", "lrp_epsilon")}
    result = analyse(Job(str(field), "x", tuple(params), params))
    store = BatchStore.open(tmp / "reopen.zarr", {"format": 1, "bench": True})
    start = time.perf_counter()
    for i in range(n):
        store.write_image_result({**result, "name": f"field{i:05d}"})
    print(f"wrote {n} images in {time.perf_counter() - start:.1f} s")
    times = []
    for i in (n // 2, n - 1, 0):
        start = time.perf_counter()
        layers = read_store(tmp / "reopen.zarr", f"field{i:05d}")
        for data, _, _ in layers:
            [np.asarray(level) for level in data] if isinstance(data, list) else np.asarray(data)
        times.append(time.perf_counter() - start)
    print(
        f"reopen one image of a {n}-image store: {len(layers)} layers in "
        + ", ".join(f"{t * 1e3:.0f} ms" for t in times)
        + " (target < 1 s)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=200)
    parser.add_argument("--methods", default="grad_cam,lrp_epsilon")
    parser.add_argument("--reopen", type=int, default=0, help="time the reader on N images")
    args = parser.parse_args(argv)
    if not REAL_DATA.is_dir():
        print(f"skipped: real data not found at {REAL_DATA}")
        return 0
    if args.reopen:
        with tempfile.TemporaryDirectory(prefix="bench-reopen-") as tmp:
            reopen(args.reopen, Path(tmp))
        return 0
    fields = real_fields(args.fields)
    print(f"{len(fields)} real fields from {REAL_DATA}; {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for method in args.methods.split(","):
            results = {w: measure(fields, method, w, Path(tmp)) for w in (1, 2)}
            for w, r in results.items():
                print(
                    f"classify + {method:12s} {w} worker(s): {r['cells_per_s']:6.1f} cells/s "
                    f"{r['images_per_s']:5.1f} images/s ({r['cells']} cells, {r['images']} "
                    f"images, {r['failed']} failed) in {r['seconds']:.1f} s warm, "
                    f"{r['end_to_end']:.1f} s with cluster start; peak RSS per worker "
                    + ", ".join(f"{mb:.0f} MB" for mb in r["rss_mb"])
                )
            ratio = results[2]["cells_per_s"] / results[1]["cells_per_s"]
            print(f"classify + {method}: scaling 2 vs 1 workers {ratio:.2f}x (target >= 1.7x)")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
