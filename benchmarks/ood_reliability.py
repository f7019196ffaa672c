"""Does the model say when a cell is unlike its training cells, and are its
probabilities calibrated?

Prints, for a model with an OOD score and a temperature in its metadata (the bundled
one, or `--model`):

* the share flagged "unlike the training cells" (the OOD score alone, and as `classify`
  reports it on the box, where a box holding no detected white cell is flagged too)
  among the test split's detected cells (target <= 5 %), among all4 ROIs that hold no
  white cell (boxes of a cell's size away from every detection: red cells and slide;
  target >= 95 %), among BCCD's
  annotated WBCs (another lab's smears, mostly neutrophils and other myeloid cells the
  model never saw) and BCCD's red-cell boxes;
* the test cells' expected calibration error before and after temperature scaling, and
  the same for the energy score (-logsumexp of the logits) as the alternative OOD score.

Usage::

    .venv/bin/python benchmarks/ood_reliability.py [--data ../shared/data] [--model M]
        [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from detection_accuracy import read_bccd_truth  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data"


def _empty_boxes(image, cells, rng, n: int = 2) -> list:
    """Up to `n` boxes of the field's median cell size that overlap no detection."""
    if not cells:
        return []
    sides = [max(c.bbox[2] - c.bbox[0], c.bbox[3] - c.bbox[1]) for c in cells]
    side = int(np.median(sides))
    rows, cols = image.shape[:2]
    taken = np.zeros((rows, cols), bool)
    for c in cells:
        r0, c0, r1, c1 = c.bbox
        taken[max(r0, 0) : r1, max(c0, 0) : c1] = True
    boxes = []
    for _ in range(200):
        if len(boxes) == n or rows <= side or cols <= side:
            break
        r, c = int(rng.integers(0, rows - side)), int(rng.integers(0, cols - side))
        if not taken[r : r + side, c : c + side].any():
            boxes.append((r, c, r + side, c + side))
            taken[r : r + side, c : c + side] = True
    return boxes


def _line(name: str, flagged: np.ndarray, energy_flagged: np.ndarray) -> None:
    n = len(flagged)
    share = flagged.mean() if n else float("nan")
    energy = energy_flagged.mean() if n else float("nan")
    print(f"  {name:<42} {share:7.1%} ({int(flagged.sum())}/{n})   energy {energy:7.1%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="images per data set")
    args = parser.parse_args(argv)
    if not (args.data / "all4").is_dir():
        print(f"No data at {args.data}; nothing to measure.")
        return 0

    from napari_leukemia.cells import detect_cells
    from napari_leukemia.images import read_image
    from napari_leukemia.model.calibration import expected_calibration_error, softmax
    from napari_leukemia.model.classify import classify, load_model
    from napari_leukemia.model.dataset import scan
    from napari_leukemia.model.inputs import cell_inputs, own_masks
    from napari_leukemia.model.ood import features_and_logits

    model = load_model(args.model)
    if model.ood is None:
        print("This model has no OOD score; run `napari-leukemia calibrate` first.")
        return 1
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    sets = {"cells": [], "empty": [], "wbc": [], "rbc": []}
    labels, agree = [], []
    # what the user's path says (`classify` on the box: no detected white cell in it, or
    # the OOD score above the threshold)
    user = {"empty": [], "wbc": [], "rbc": []}

    def add_user(kind, image, boxes):
        user[kind] += [bool(c.unfamiliar) for c in classify(image, model, bbox=boxes)]

    def add(kind, image, boxes, masks=None):
        batch = cell_inputs(image, boxes, model.info.input, masks)[0]
        sets[kind].append(features_and_logits(model.keras_model, batch, model.ood.layers))

    data = scan(args.data / "all4", class_names=model.class_names)
    test = set(model.info.data["split"]["test"])
    indices = [i for i, p in enumerate(data.paths) if p.name in test][: args.limit]
    for i in indices:
        image = read_image(data.paths[i])
        found = detect_cells(image)
        cells = found[:8]
        if cells:
            add("cells", image, [c.bbox for c in cells], own_masks(cells, image.shape))
            labels += [data.labels[i]] * len(cells)
            calls = classify(image, model, bbox=cells)  # the user's path flags the same
            agree += [c.unfamiliar for c in calls]
        empty = _empty_boxes(image, found, rng)  # away from every detection
        if empty:
            add("empty", image, empty)
            add_user("empty", image, empty)
    bccd = args.data / "bccd"
    if bccd.is_dir():
        red = _bccd_red_boxes(bccd)
        for name, boxes in list(read_bccd_truth(bccd).items())[: args.limit]:
            path = bccd / "JPEGImages" / name
            if not path.is_file():
                continue
            image = read_image(path)
            if boxes:
                add("wbc", image, boxes)
                add_user("wbc", image, boxes)
            if red.get(name):
                add("rbc", image, red[name][:2])
                add_user("rbc", image, red[name][:2])

    def joined(kind):
        parts = sets[kind] or [(np.zeros((0, 1)), np.zeros((0, len(model.class_names))))]
        return np.concatenate([f for f, _ in parts]), np.concatenate([z for _, z in parts])

    outputs = {k: joined(k) for k in sets}
    flags = {
        k: model.ood.scores(f) > model.ood.threshold if len(f) else np.zeros(0, bool)
        for k, (f, _) in outputs.items()
    }
    energy = {k: -_logsumexp(z) for k, (_, z) in outputs.items()}
    energy_threshold = np.quantile(energy["cells"], 0.99)
    energy_flags = {k: v > energy_threshold for k, v in energy.items()}
    cell_flags = flags["cells"]
    print(f"Model: {model.path.name}; OOD threshold {model.ood.threshold:.1f}")
    print("Flagged 'unlike the training cells' (Mahalanobis; energy score at its own")
    print("99th percentile of the test cells, for comparison):")
    _line("all4 test-split cells (target <= 5 %)", cell_flags, energy_flags["cells"])
    _line("all4 ROIs with no white cell (>= 95 %)", flags["empty"], energy_flags["empty"])
    _line("BCCD WBCs (another lab, mostly myeloid)", flags["wbc"], energy_flags["wbc"])
    _line("BCCD red-cell boxes", flags["rbc"], energy_flags["rbc"])
    print(f"  classify() flags the same test cells: {bool(np.array_equal(agree, cell_flags))}")
    print("classify() on the box (unfamiliar: no detected white cell in it, or the OOD score):")
    for kind, name in (("empty", "all4 ROIs with no white cell (>= 95 %)"),
                       ("wbc", "BCCD WBCs"), ("rbc", "BCCD red-cell boxes")):  # fmt: skip
        flagged = np.asarray(user[kind], bool)
        share = f"{flagged.mean():6.1%}" if flagged.size else "   n/a"
        print(f"  {name:44s} {share} of {flagged.size}")
    wbc_calls = softmax(outputs["wbc"][1], model.temperature).argmax(axis=1)
    kept = ~flags["wbc"]
    print(
        f"  BCCD WBCs not flagged and called Benign: "
        f"{int((wbc_calls[kept] == 0).sum())} of {int(kept.sum())}"
    )
    logits, labels = outputs["cells"][1], np.asarray(labels)
    t = model.temperature
    print(
        f"Test cells: ECE {expected_calibration_error(softmax(logits), labels):.4f} -> "
        f"{expected_calibration_error(softmax(logits, t), labels):.4f} at T = {t:.3f}"
    )
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _logsumexp(z: np.ndarray) -> np.ndarray:
    if len(z) == 0:
        return np.zeros(0)
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def _bccd_red_boxes(bccd: Path) -> dict:
    import csv

    boxes: dict = {}
    with open(bccd / "boxes.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["cell_type"].strip() == "RBC":
                xmin, xmax, ymin, ymax = (
                    int(float(row[k])) for k in ("xmin", "xmax", "ymin", "ymax")
                )
                boxes.setdefault(row["filename"], []).append((ymin - 1, xmin - 1, ymax, xmax))
    return boxes


if __name__ == "__main__":
    raise SystemExit(main())
