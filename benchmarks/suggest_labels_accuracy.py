"""How close is `suggest_labels` to expert masks?

Runs :func:`napari_leukemia.labels.suggest_labels` on the Zheng et al. (2018) WBC images
(``wbc_seg_zheng2018/dataset1``: ``images/NNN.bmp``, ``masks/NNN.png`` with 0 background,
128 cytoplasm, 255 nucleus) and prints per-image Dice for the nucleus and for the whole
cell (nucleus + cytoplasm + vacuole), as mean, median and 10th percentile, plus the
median time per image. The data are read from ``../shared/data`` and never copied.
Other datasets (e.g. dataset2, another lab and stain) are held back to check that the
method generalises; nothing here is tuned to these images.

Usage::

    .venv/bin/python benchmarks/suggest_labels_accuracy.py [--data ../shared/data]
        [--limit N] [--worst K]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NUCLEUS_TARGET, CELL_TARGET = 0.90, 0.85


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def read_truth(path: Path) -> np.ndarray:
    """Expert mask quantised to 0 background, 1 cytoplasm, 2 nucleus (< 64 | < 192 | else)."""
    from PIL import Image

    mask = np.asarray(Image.open(path))
    if mask.ndim == 3:
        mask = mask[..., 0]
    return np.digitize(mask, [64, 192])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--worst", type=int, default=5, help="list the K worst images")
    args = parser.parse_args(argv)

    folder = args.data / "wbc_seg_zheng2018" / "dataset1"
    images = sorted((folder / "images").glob("*.bmp"))
    if not images:
        print(f"No Zheng dataset1 images under {folder}; nothing to measure.", file=sys.stderr)
        return 1
    if args.limit:
        images = images[: args.limit]

    from PIL import Image

    from napari_leukemia.labels import suggest_labels

    nucleus, cell, times, used = [], [], [], []
    for path in images:
        truth_path = folder / "masks" / f"{path.stem}.png"
        if not truth_path.exists():
            print(f"skip {path.name}: no mask", file=sys.stderr)
            continue
        image = np.asarray(Image.open(path).convert("RGB"))
        truth = read_truth(truth_path)
        start = time.perf_counter()
        draft = suggest_labels(image)
        times.append(time.perf_counter() - start)
        nucleus.append(dice(draft == 1, truth == 2))
        cell.append(dice((draft >= 1) & (draft <= 3), truth >= 1))
        used.append(path.stem)

    nucleus, cell = np.array(nucleus), np.array(cell)
    print(f"suggest_labels on Zheng 2018 dataset1: {len(nucleus)} images")
    for name, values, target in (
        ("nucleus", nucleus, NUCLEUS_TARGET),
        ("whole cell", cell, CELL_TARGET),
    ):
        verdict = "meets" if values.mean() >= target else "MISSES"
        print(
            f"  Dice {name:<10}: mean {values.mean():.3f}  median {np.median(values):.3f}  "
            f"p10 {np.percentile(values, 10):.3f}  min {values.min():.3f}  "
            f"({verdict} target {target:.2f})"
        )
    print(
        f"  time per image : median {1000 * np.median(times):.1f} ms, "
        f"max {1000 * np.max(times):.1f} ms"
    )
    if args.worst:
        order = np.argsort(nucleus + cell)[: args.worst]
        worst = ", ".join(
            f"{used[i]} (nucleus {nucleus[i]:.2f}, cell {cell[i]:.2f})" for i in order
        )
        print(f"  worst images   : {worst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
