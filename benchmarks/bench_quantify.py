"""Speed of `quantify`: a 1024 x 1024 map against a label image with 6 labels.

Target (issue): < 50 ms per call. Prints the median (and best) of repeated calls for
each threshold rule, plus `quantify_many` over a small batch, and the time for many
labels (issue 14 #21: 1,000 labels of mostly distinct sizes on a 2048 x 2048 map, which
took seconds while the cost grew with the number of distinct label sizes).

Usage::

    .venv/bin/python benchmarks/bench_quantify.py [--repeat 15] [--size 1024]
        [--many-labels 1000] [--many-size 2048]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import ndimage as ndi

TARGET_MS = 50.0


def make_inputs(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth signed map and a label image with 6 labels covering every pixel."""
    rng = np.random.default_rng(seed)
    relevance = ndi.gaussian_filter(rng.standard_normal((size, size)), size / 256)
    rows, cols = np.indices((size, size)) / size
    labels = np.full((size, size), 5, np.uint8)  # background
    cell = (rows - 0.4) ** 2 + (cols - 0.5) ** 2
    labels[cell < 0.2**2] = 2  # cytoplasm
    labels[cell < 0.12**2] = 1  # nucleus
    labels[(rows - 0.42) ** 2 + (cols - 0.52) ** 2 < 0.01**2] = 3  # vacuole
    labels[(rows - 0.8) ** 2 + (cols - 0.2) ** 2 < 0.09**2] = 4  # red blood cell
    labels[: size // 20, : size // 20] = 6  # e.g. a scale bar
    return relevance, labels


def make_many_labels(size: int, n_labels: int, seed: int = 0) -> np.ndarray:
    """A Voronoi label image: `n_labels` regions around random seeds, sizes mostly distinct."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.int32)
    points = rng.choice(size * size, n_labels, replace=False)
    seeds.flat[points] = np.arange(1, n_labels + 1)
    _, (rows, cols) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[rows, cols]


def bench_many_labels(size: int, n_labels: int, repeat: int) -> float:
    """Print and return the median time of `quantify` with many labels (ms)."""
    from napari_leukemia.quantify import quantify

    relevance, _ = make_inputs(size, seed=1)
    labels = make_many_labels(size, n_labels)
    n_sizes = np.unique(np.bincount(labels.ravel())[1:]).size
    med, best = timed(lambda: quantify(relevance, labels), repeat)
    print(
        f"quantify: {size}x{size} map, {n_labels} labels ({n_sizes} distinct sizes): "
        f"median {med:7.1f} ms   best {best:7.1f} ms"
    )
    return med


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median and best wall time in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times)), float(np.min(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="calls per measurement")
    parser.add_argument("--size", type=int, default=1024, help="map side in pixels")
    parser.add_argument("--many-labels", type=int, default=1000, help="labels, many-label run")
    parser.add_argument("--many-size", type=int, default=2048, help="map side, many-label run")
    args = parser.parse_args(argv)

    from napari_leukemia.quantify import quantify, quantify_many

    relevance, labels = make_inputs(args.size)
    n_labels = len(np.unique(labels))
    print(
        f"quantify: {args.size}x{args.size} float64 map, {n_labels} labels, "
        f"median of {args.repeat} calls"
    )
    quantify(relevance, labels)  # warm up
    verdict = None
    for threshold in ("mean", "percentile:90", "topk:10000", "otsu"):
        med, best = timed(
            lambda t=threshold: quantify(relevance, labels, threshold=t), args.repeat
        )
        print(f"  threshold={threshold:<14} median {med:6.1f} ms   best {best:6.1f} ms")
        if threshold == "mean":
            verdict = med
    med, _ = timed(lambda: quantify(relevance.astype(np.float32), labels), args.repeat)
    print(f"  float32 map, mean        median {med:6.1f} ms")
    items = [
        {"method": m, "image": i, "relevance": relevance, "labels": labels}
        for m in ("a", "b")
        for i in range(4)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        med, _ = timed(lambda: quantify_many(items), max(3, args.repeat // 5))
    print(f"  quantify_many, 8 maps    median {med:6.1f} ms ({med / 8:.1f} ms per map)")
    status = "meets" if verdict < TARGET_MS else "MISSES"
    print(f"Result: {verdict:.1f} ms per map with threshold='mean' ({status} < {TARGET_MS:g} ms)")
    if args.many_labels > 0:
        bench_many_labels(args.many_size, args.many_labels, max(3, args.repeat // 5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
