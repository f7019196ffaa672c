"""Context swap over a data set: does the model's call stay with the cell?

Protocol (issue 10): for every field of the test split, the most confident cell that the
model classifies correctly is cut out by its detector mask grown by 2 px and pasted at
the same position into a field of another class whose own cells lie outside the model's
window there; it is classified again at the same box (`context_check` with that field
as the donor). The same cell is also pasted on a blank slide of its own field's
background colour. Prints the share of swaps where the call stays with the cell, the
share flipped to the other field's class, per-class kept counts and the blank-slide
kept rate. Inference only. Run:

    python benchmarks/context_swap.py [--data ../shared/data/all4] [--model M.keras]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from napari_leukemia.cells import detect_cells
from napari_leukemia.images import read_image
from napari_leukemia.model.classify import classify, load_model
from napari_leukemia.model.dataset import IMAGE_SUFFIXES, scan, split
from napari_leukemia.model.metadata import FOLDER_TO_CLASS
from napari_leukemia.sanity import placement
from napari_leukemia.sanity.context import GROW_PX, context_check

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "all4"


def test_fields(data_dir: Path, info) -> list[tuple[Path, str]]:
    """(path, class) of the model's test split: as recorded in its metadata, else recomputed."""
    recorded = info.data.get("split", {}).get("test")
    if recorded is None:
        dataset = scan(data_dir, info.class_names)
        seed = info.data.get("split", {}).get("seed", 0)
        recorded = [dataset.paths[i].name for i in split(dataset, seed=seed)["test"]]
    names = set(recorded)
    out = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        name = FOLDER_TO_CLASS.get(folder.name, folder.name)
        for path in sorted(folder.iterdir()):
            if path.name in names and path.suffix.lower() in IMAGE_SUFFIXES:
                out.append((path, name))
    return out


def best_cell(image, cells, label: str, model):
    """The detected cell classified as `label` with the highest probability, or None."""
    best, best_p = None, -1.0
    for cell in cells:
        result = classify(image, model, bbox=cell.bbox)
        if result.class_name == label and result.probabilities[label] > best_p:
            best, best_p = cell, result.probabilities[label]
    return best


def recipient(fields, occupied, source, window, rng):
    """A field of another class whose own cells lie outside `window`, or None."""
    label = fields[source][1]
    for j in rng.permutation(len(fields)):
        if fields[j][1] != label and placement.placement_in(occupied[j], window) == (0, 0):
            return j
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N fields")
    parser.add_argument("--seed", type=int, default=0, help="seed of the recipient choice")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"No data at {args.data}; nothing to measure.")
        return
    start = time.perf_counter()
    model = load_model(args.model)
    fields = test_fields(args.data, model.info)
    if args.limit:
        fields = fields[:: max(1, len(fields) // args.limit)][: args.limit]
    images = [placement.rgb8(read_image(path)) for path, _ in fields]
    detected = [detect_cells(image) for image in images]
    occupied = [
        placement.cells_mask(cells, image.shape, GROW_PX)
        for cells, image in zip(detected, images, strict=True)
    ]
    rng = np.random.default_rng(args.seed)
    kept, flipped, blank_kept, sources = Counter(), Counter(), 0, 0
    swaps = Counter()
    for i, ((_, label), image) in enumerate(zip(fields, images, strict=True)):
        cell = best_cell(image, detected[i], label, model)
        if cell is None:
            continue
        sources += 1
        window = placement.roi_window(cell.bbox, model.info.input.margin, image.shape)
        j = recipient(fields, occupied, i, window, rng)
        mask = placement.mask_of(cell, image.shape)
        donors = [] if j is None else [images[j]]
        result = context_check(image, cell.bbox, model, donors=donors, mask=mask)
        rows = result.table.set_index("kind")
        blank_kept += int(rows.loc["blank slide", "class"] == label)
        if j is None:
            continue
        call = rows.loc["donor", "class"]
        swaps[label] += 1
        kept[label] += int(call == label)
        flipped[label] += int(call == fields[j][1])
    report(args, model, len(fields), sources, swaps, kept, flipped, blank_kept, start)


def report(args, model, n_fields, sources, swaps, kept, flipped, blank_kept, start) -> None:
    total = sum(swaps.values())
    print(
        f"context swap on {args.data} (test split of "
        f"{args.model or 'the bundled model'}: {n_fields} fields)"
    )
    print(f"fields with a correctly classified cell: {sources}; swaps: {total}")
    print(f"cell mask grown by {GROW_PX} px, pasted at the same position, same box")
    if total:
        print(
            f"call stays with the cell:          {sum(kept.values())}/{total} = "
            f"{100 * sum(kept.values()) / total:.1f} %"
        )
        print(
            f"flipped to the other field's class: {sum(flipped.values())}/{total} = "
            f"{100 * sum(flipped.values()) / total:.1f} %"
        )
    for name in model.class_names:
        if swaps[name]:
            print(
                f"  {name:12s} kept {kept[name]:3d} of {swaps[name]:3d} swaps, "
                f"flipped {flipped[name]:3d}"
            )
    if sources:
        print(f"blank slide kept: {blank_kept}/{sources} = {100 * blank_kept / sources:.1f} %")
    print(f"time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
