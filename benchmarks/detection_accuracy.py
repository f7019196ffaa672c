"""How well does `detect_cells` find white blood cells on real smears?

Reads the shared data (never copied into the repository) and prints:

* BCCD (every train + val image present): share of annotated WBC boxes matched by a
  detection with IoU >= 0.5 (greedy one-to-one matching, highest IoU first) and the mean
  number of unmatched ("extra") detections per image;
* all4 (4-class ALL fields, several cells each, no boxes): share of images with at least
  one detected cell and the mean number of detections per image, overall and per class;
* the median detection time on a 640 x 480 field.

Usage::

    .venv/bin/python benchmarks/detection_accuracy.py [--data ../shared/data] [--limit N]
        [--min-score S]

Exits cleanly with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data"
IOU_MATCH = 0.5

Box = tuple[int, int, int, int]


def read_voc_boxes(xml_path: Path, name: str = "WBC") -> list[Box]:
    """Boxes of class `name` in a Pascal-VOC file as (min_row, min_col, max_row, max_col).

    VOC pixel indices are 1-based and inclusive, so ``xmin`` becomes column ``xmin - 1``
    and ``xmax`` is the exclusive end.
    """
    root = ET.parse(xml_path).getroot()
    boxes = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip() != name:
            continue
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (
            int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        boxes.append((ymin - 1, xmin - 1, ymax, xmax))
    return boxes


def read_bccd_truth(bccd: Path) -> dict[str, list[Box]]:
    """Image file name → its WBC boxes, from ``Annotations/*.xml`` or else ``boxes.csv``.

    Every annotated image is listed, also those without any WBC box.
    """
    xml_dir = bccd / "Annotations"
    if xml_dir.is_dir() and any(xml_dir.glob("*.xml")):
        return {f"{p.stem}.jpg": read_voc_boxes(p) for p in sorted(xml_dir.glob("*.xml"))}
    truth: dict[str, list[Box]] = defaultdict(list)
    with open(bccd / "boxes.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            boxes = truth[row["filename"]]  # creates the entry even for RBC-only images
            if row["cell_type"].strip() == "WBC":
                xmin, xmax, ymin, ymax = (
                    int(float(row[k])) for k in ("xmin", "xmax", "ymin", "ymax")
                )
                boxes.append((ymin - 1, xmin - 1, ymax, xmax))
    return dict(sorted(truth.items()))


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (min_row, min_col, max_row, max_col) boxes."""
    rows = min(a[2], b[2]) - max(a[0], b[0])
    cols = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(rows, 0) * max(cols, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_match(truth, found, threshold: float = IOU_MATCH) -> list[tuple[int, int, float]]:
    """One-to-one matches (truth index, found index, IoU), highest IoU first."""
    pairs = sorted(
        ((box_iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    used_t, used_f, matches = set(), set(), []
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i in used_t or j in used_f:
            continue
        used_t.add(i)
        used_f.add(j)
        matches.append((i, j, iou))
    return matches


def bccd_scores(bccd: Path, detect, limit: int | None = None) -> dict:
    """Match detections to the WBC boxes of every annotated BCCD image."""
    from skimage import io

    truth_by_file = read_bccd_truth(bccd)
    n_truth = n_matched = n_extra = 0
    ious, times, misses = [], [], []
    for name, truth in list(truth_by_file.items())[:limit]:
        image_path = bccd / "JPEGImages" / name
        if not image_path.exists():
            continue
        image = io.imread(image_path)
        start = time.perf_counter()
        cells = detect(image)
        times.append(time.perf_counter() - start)
        found = [c.bbox for c in cells]
        matches = greedy_match(truth, found)
        n_truth += len(truth)
        n_matched += len(matches)
        n_extra += len(found) - len(matches)
        ious.extend(iou for _, _, iou in matches)
        if len(matches) < len(truth):
            misses.append(Path(name).stem)
    n_images = len(times)
    return {
        "images": n_images,
        "wbc_boxes": n_truth,
        "recall": n_matched / n_truth if n_truth else float("nan"),
        "extra_per_image": n_extra / n_images if n_images else float("nan"),
        "mean_iou_matched": float(np.mean(ious)) if ious else float("nan"),
        "median_time_s": float(np.median(times)) if times else float("nan"),
        "missed_images": misses,
    }


def all4_scores(all4: Path, detect, limit: int | None = None) -> dict:
    """Share of all4 fields with at least one detection, overall and per class."""
    from skimage import io

    per_class = {}
    counts: list[int] = []
    for class_dir in sorted(p for p in all4.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.jpg"))[:limit]
        if not files:
            continue
        found = np.asarray([len(detect(io.imread(f))) for f in files])
        counts.extend(found.tolist())
        per_class[class_dir.name] = (len(found), float(np.mean(found > 0)), float(found.mean()))
    array = np.asarray(counts)
    return {
        "images": len(array),
        "with_detection": float(np.mean(array > 0)) if len(array) else float("nan"),
        "mean_detections": float(array.mean()) if len(array) else float("nan"),
        "per_class": per_class,
    }


def timing(detect, image: np.ndarray, repeats: int = 21) -> tuple[float, float]:
    """Median (wall, CPU) time of `detect(image)` in seconds, after one warm-up call.

    CPU time of this process is reported too because the machine may be shared: it is
    what the detector itself costs when other jobs compete for the cores.
    """
    detect(image)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        detect(image)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return float(np.median(wall)), float(np.median(cpu))


def _import_detector():
    try:
        from napari_leukemia.cells import detect_cells
    except ImportError:  # running from a checkout that is not installed
        sys.path.insert(0, str(REPO / "src"))
        from napari_leukemia.cells import detect_cells
    return detect_cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--limit", type=int, default=None, help="at most N images per set/class")
    parser.add_argument("--min-score", type=float, default=None, help="detect_cells min_score")
    args = parser.parse_args(argv)

    data = args.data.resolve()
    bccd, all4 = data / "bccd", data / "all4"
    if not bccd.is_dir() and not all4.is_dir():
        print(f"No data at {data} (expected bccd/ and/or all4/); nothing to measure.")
        return 0

    detect_cells = _import_detector()
    kwargs = {} if args.min_score is None else {"min_score": args.min_score}

    def detect(image):
        return detect_cells(image, **kwargs)

    print(f"detect_cells options: {kwargs or 'defaults'}")
    if bccd.is_dir():
        s = bccd_scores(bccd, detect, args.limit)
        print(f"BCCD train+val: {s['images']} images, {s['wbc_boxes']} WBC boxes")
        print(f"  WBC boxes matched at IoU>={IOU_MATCH}: {s['recall']:.1%}")
        print(f"  extra (unmatched) detections per image: {s['extra_per_image']:.2f}")
        print(f"  mean IoU of matched boxes: {s['mean_iou_matched']:.3f}")
        missed = s["missed_images"]
        listed = " ".join(missed[:12]) + (" ..." if len(missed) > 12 else "")
        print(
            f"  images with a missed WBC box: {len(missed)}" + (f" ({listed})" if missed else "")
        )
        print(f"  median time per field (during the run): {s['median_time_s'] * 1000:.1f} ms")
    else:
        print(f"BCCD: not found at {bccd}; skipped.")

    if all4.is_dir():
        s = all4_scores(all4, detect, args.limit)
        print(f"all4: {s['images']} images")
        print(f"  images with >=1 detected cell: {s['with_detection']:.1%}")
        print(f"  mean detections per image: {s['mean_detections']:.2f}")
        for name, (n, share, mean) in s["per_class"].items():
            print(f"    {name:<7} {n:4d} images: with detection {share:.1%}, mean {mean:.2f}")
    else:
        print(f"all4: not found at {all4}; skipped.")

    sample = sorted((bccd / "JPEGImages").glob("*.jpg"))[:1] if bccd.is_dir() else []
    if sample:
        from skimage import io

        image, source = io.imread(sample[0]), sample[0].name
    else:
        image, source = np.full((480, 640, 3), 230, np.uint8), "a blank synthetic field"
    wall, cpu = timing(detect, image)
    print(
        f"median detection time on a {image.shape[1]}x{image.shape[0]} field ({source}, "
        f"21 runs): {wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
