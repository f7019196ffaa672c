"""One whole-slide image through the chain without loading it: the tiled batch path.

Cells come from `tiles.detect_cells_tiled`. They are then classified and explained in
small groups (cells whose centres share a `GROUP_SIDE` block): each group reads only the
window holding its cells' ROIs, and the cells are shifted into that window. For a model
that reads the cell alone (the bundled one) the model input is then the same, bit for
bit, as on the whole image, since it depends only on the cell's mask inside its ROI
window; for a model that reads the cell's surroundings it is the same unless the ROI
window reaches past the image edge, where the padding colour is the window's median
instead of the whole image's.

Maps are kept on the model input (one small array per cell) with their ROI transform in
image pixels, not as full-size maps: a full-size map per cell of a 10k x 10k image would
be 400 MB each. `lazy_store.write_whole_slide` writes them (see there for the layout).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from ..roi import RoiTransform, square_window

#: Cells are classified and explained in groups: those whose centres share a block of
#: this many image pixels (a window of about this size plus one ROI is read per group).
GROUP_SIDE = 384


def _groups(cells, shape) -> dict[tuple[int, int], list[int]]:
    """Indices of the cells by the `GROUP_SIDE` block holding their centre."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, cell in enumerate(cells):
        row, col = cell.centroid
        groups.setdefault((int(row // GROUP_SIDE), int(col // GROUP_SIDE)), []).append(i)
    return groups


def _window(cells, margin: float, shape) -> tuple[int, int, int, int]:
    """The image window holding every cell's ROI window (and the rim grown on its mask)."""
    from ..model.cell_context import GROW_PX

    windows = np.array([square_window(c.bbox, margin, shape) for c in cells])
    pad = GROW_PX + 1
    top, left = windows[:, :2].min(axis=0) - pad
    bottom, right = windows[:, 2:].max(axis=0) + pad
    # an even origin: `square_window` rounds half to even, so only a shift by an even
    # number of pixels gives a cell the same ROI pixels in the window as on the image
    top, left = (max(int(v), 0) // 2 * 2 for v in (top, left))
    return top, left, min(int(bottom), shape[0]), min(int(right), shape[1])


def _in_window(cell, top: int, left: int):
    r0, c0, r1, c1 = cell.bbox
    return replace(cell, bbox=(r0 - top, c0 - left, r1 - top, c1 - left))


def _to_image(transform: RoiTransform, top: int, left: int, shape) -> RoiTransform:
    origin = (transform.origin[0] + top, transform.origin[1] + left)
    return RoiTransform(origin, transform.scale, tuple(int(v) for v in shape[:2]))


def _run_group(image, cells, job, model, labels):
    """Classify and explain the cells of one group from the window that holds them."""
    from ..explain import explain_full
    from ..model.classify import classify
    from ..tiles import read_window

    shape = tuple(int(v) for v in image.shape[:2])
    top, left, bottom, right = _window(cells, model.info.input.margin, shape)
    pixels = read_window(image, (top, bottom), (left, right))
    local = [_in_window(c, top, left) for c in cells]
    window_labels = None if labels is None else labels[top:bottom, left:right]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calls = classify(pixels, model, bbox=local)
        explained = {
            m: explain_full(pixels, m, model, bbox=local, **job.params.get(m, {}))
            for m in job.methods
        }
    return calls, explained, window_labels, (top, left)


def classify_and_explain(image, cells, job, model, labels=None):
    """Calls, maps on the model input per method, map rows and quantify entries."""
    shape = tuple(int(v) for v in image.shape[:2])
    n = len(cells)
    calls = [None] * n
    size = tuple(model.info.input.size)
    maps = {m: np.zeros((n, *size), np.float32) for m in job.methods}
    rows, entries, transforms = [], [], [None] * n
    for indices in _groups(cells, shape).values():
        group_calls, explained, window_labels, (top, left) = _run_group(
            image, [cells[i] for i in indices], job, model, labels
        )
        for k, i in enumerate(indices):
            calls[i] = group_calls[k]
            for method in job.methods:
                result = explained[method][k]
                maps[method][i] = result.input_map
                if transforms[i] is None:
                    transforms[i] = _to_image(result.transform, top, left, shape)
                rows.append(_map_row(i + 1, method, result))
                if window_labels is not None:
                    entries.append({"cell": i + 1, "method": method,
                                    "relevance": result.input_map,
                                    "transform": result.transform,
                                    "labels": window_labels})  # fmt: skip
    table = pd.DataFrame(rows, columns=list(_map_row(0, "", None)))
    if len(table):
        table = table.sort_values(["cell", "method"], kind="stable").reset_index(drop=True)
    return calls, maps, table, transforms, entries


def _map_row(cell: int, method: str, result) -> dict:
    if result is None:
        keys = ("cell", "method", "target", "target_name", "logit", "empty", "notes")
        return dict.fromkeys(keys)
    return {
        "cell": cell,
        "method": method,
        "target": int(result.target),
        "target_name": result.target_name,
        "logit": float(result.logit),
        "empty": not np.any(result.input_map),
        "notes": " ".join(result.notes),
    }


def analyse_whole_slide(job, model, labels=None, names=None) -> dict:
    """Detect (tiled), classify, explain and quantify one large image, read lazily.

    The result has ``whole_slide`` set; it holds the cells themselves (bbox-local masks)
    instead of a full-size label image, and maps on the model input with their ROI
    transforms instead of full-size maps.
    """
    from ..tiles import detect_cells_tiled, open_lazy

    start = time.perf_counter()
    image = open_lazy(job.source)
    cells = detect_cells_tiled(image)
    return per_cell_result(job, model, image, cells, labels, names, start)


def per_cell_result(job, model, image, cells, labels, names, start: float) -> dict:
    """Classify, explain and quantify the detected `cells` of `image` (numpy or dask),
    keeping each map on the model input: the result of `analyse_whole_slide`, also used
    for an image of normal size whose full-size maps would not fit in memory."""
    from .analysis import _cells_table

    shape = tuple(int(v) for v in image.shape[:2])
    calls, maps, map_rows, transforms, entries = classify_and_explain(
        image, cells, job, model, labels
    )
    quantification = None
    if labels is not None:
        from ..quantify import quantify_many

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantification = quantify_many(entries, label_names=names or None)
    return {
        "source": job.source,
        "name": job.name,
        "error": None,
        "whole_slide": True,
        "shape": shape,
        "cell_list": cells,
        "cells": _cells_table(cells, calls, model.class_names),
        "maps": maps,
        "map_rows": map_rows,
        "transforms": [t.as_dict() for t in transforms],
        "labels": labels,
        "label_names": {int(k): str(v) for k, v in (names or {}).items()},
        "quantification": quantification,
        "seconds": time.perf_counter() - start,
        "worker_pid": os.getpid(),
    }
