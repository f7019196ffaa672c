"""How many of the white cells on all4 fields does `detect_cells` find, per class?

The all4 data set (acute lymphoblastic leukaemia smears: Benign, Early, Pre, Pro) has no
cell boxes, so this benchmark uses ``benchmarks/data/all4_wbc_centres.csv``: the centres of
every white blood cell / blast on a small, reproducible sample of all4 fields, marked by
hand for this project (see ``benchmarks/data/README.md``). The CSV holds only coordinates;
the images are read from the shared data folder and never copied into the repository.

For every annotated image, `napari_leukemia.cells.detect_cells` is run at its default
``min_score`` and at ``min_score=0``. A detection matches an annotated centre when the
centre lies inside the detection's box (``(min_row, min_col, max_row, max_col)``, max
exclusive). Matching is one-to-one and greedy: all (detection, centre) pairs with the
centre inside the box are taken in order of the distance from the centre to the box's
middle, nearest first, skipping detections and centres already used. Printed per class
and overall:

* ``cells``: annotated centres; ``found``: matched centres; ``dets``: detections;
* ``recall`` = found / cells;
* ``precision`` = found / dets (every unmatched detection counts as a false positive,
  also one lying on a cell that another detection already matched);
* ``recall_sure``: recall over the centres whose note does not say "uncertain";

and, per image, the annotated centres no detection matched (with their notes).

Usage::

    .venv/bin/python benchmarks/detection_recall_all4.py [--data ../shared/data]
        [--centres benchmarks/data/all4_wbc_centres.csv]

Exits cleanly with a message when the data folder or the annotation file is absent.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data"
DEFAULT_CENTRES = REPO / "benchmarks" / "data" / "all4_wbc_centres.csv"
CLASSES = ("Benign", "Early", "Pre", "Pro")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Centre:
    """One annotated white-cell centre in image pixels."""

    row: int
    col: int
    note: str

    @property
    def uncertain(self) -> bool:
        """True when the annotator marked this cell as uncertain."""
        return "uncertain" in self.note.lower()


def read_centres(path: Path) -> dict[tuple[str, str], list[Centre]]:
    """(class, file) → its annotated centres; images without white cells map to []."""
    truth: dict[tuple[str, str], list[Centre]] = {}
    with open(path, newline="") as handle:
        for rec in csv.DictReader(line for line in handle if not line.startswith("#")):
            centres = truth.setdefault((rec["class"].strip(), rec["file"].strip()), [])
            if rec["row"].strip() and rec["col"].strip():
                centres.append(Centre(int(rec["row"]), int(rec["col"]), rec["note"].strip()))
    return truth


def match(boxes: list[Box], centres: list[Centre]) -> set[int]:
    """Indices of `centres` matched one-to-one to `boxes` (centre inside box, nearest first)."""
    pairs = []
    for d, (r0, c0, r1, c1) in enumerate(boxes):
        mid_r, mid_c = (r0 + r1 - 1) / 2.0, (c0 + c1 - 1) / 2.0
        for k, cen in enumerate(centres):
            if r0 <= cen.row < r1 and c0 <= cen.col < c1:
                pairs.append(((cen.row - mid_r) ** 2 + (cen.col - mid_c) ** 2, d, k))
    used_boxes: set[int] = set()
    matched: set[int] = set()
    for _, d, k in sorted(pairs):
        if d not in used_boxes and k not in matched:
            used_boxes.add(d)
            matched.add(k)
    return matched


def ratio(num: int, den: int) -> str:
    """num / den as a 3-decimal string, or "-" when den is 0."""
    return f"{num / den:.3f}" if den else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--centres", type=Path, default=DEFAULT_CENTRES, help="annotation CSV")
    args = parser.parse_args(argv)

    all4 = args.data / "all4"
    if not all4.is_dir():
        print(f"No all4 data at {all4.resolve()}; nothing to measure.")
        return 0
    if not args.centres.is_file():
        print(f"No annotation file at {args.centres}; nothing to measure.")
        return 0

    sys.path.insert(0, str(REPO / "src"))
    from napari_leukemia.cells import detect_cells
    from napari_leukemia.images import read_image

    default_score = inspect.signature(detect_cells).parameters["min_score"].default
    truth = read_centres(args.centres)
    images = {}
    for cls, name in truth:
        path = all4 / cls / name
        if path.is_file():
            images[cls, name] = read_image(path)
        else:
            print(f"warning: {path} is missing; skipped.")
    if not images:
        print("None of the annotated images is present; nothing to measure.")
        return 0
    n_uncertain = sum(c.uncertain for key in images for c in truth[key])
    print(
        f"all4 white-cell recall: {len(images)} hand-annotated images, "
        f"{sum(len(truth[key]) for key in images)} cells ({n_uncertain} marked uncertain)"
    )

    for min_score in (default_score, 0.0):
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        missed_lines = []
        for (cls, name), image in images.items():
            centres = truth[cls, name]
            cells = detect_cells(image, min_score=min_score)
            matched = match([c.bbox for c in cells], centres)
            sure = [k for k, c in enumerate(centres) if not c.uncertain]
            counts = (
                len(centres),
                len(matched),
                len(cells),
                len(sure),
                sum(k in matched for k in sure),
            )
            for key in (cls, "all"):
                totals[key] = [a + b for a, b in zip(totals[key], counts, strict=True)]
            missed = [c for k, c in enumerate(centres) if k not in matched]
            if missed:
                listed = "; ".join(
                    f"({c.row}, {c.col})" + (f" [{c.note}]" if c.note else "") for c in missed
                )
                missed_lines.append(f"  {cls}/{name}: {len(missed)} missed: {listed}")

        print(f"\nmin_score = {min_score:g}")
        print(
            f"  {'class':<7} {'images':>6} {'cells':>5} {'found':>5} {'dets':>5} "
            f"{'recall':>6} {'precision':>9} {'recall_sure':>11}"
        )
        n_images = defaultdict(int)
        for cls, _ in images:
            n_images[cls] += 1
            n_images["all"] += 1
        for key in (*[c for c in CLASSES if c in totals], "all"):
            n_cells, found, dets, n_sure, found_sure = totals[key]
            print(
                f"  {key:<7} {n_images[key]:>6} {n_cells:>5} {found:>5} {dets:>5} "
                f"{ratio(found, n_cells):>6} {ratio(found, dets):>9} "
                f"{ratio(found_sure, n_sure):>11}"
            )
        print("  missed centres (row, col) per image:")
        print("\n".join(missed_lines) if missed_lines else "  none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
