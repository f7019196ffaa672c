"""One image through the chain, on a Dask worker: numpy and pandas in a plain dict out.

`analyse` writes nothing. `analyse_into` also writes the result into the store (the
image's own group, marked complete last), so workers write in parallel and only a small
summary travels back. The model is loaded once per worker process (`load_model` caches
it), then reused for every image the worker gets. Images above `Job.max_pixels` take the
tiled path of `whole_slide` (read lazily, never whole) and are written by `lazy_store`.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..tiles import LARGE_PIXELS

#: An image's maps are kept full size (one image-sized float32 map per cell and method)
#: up to this many bytes; above it, on the model input per cell, as for whole slides
#: (2048 x 2048 with 155 cells and one method would be 2.6 GB).
FULL_MAPS_MAX_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Job:
    """What to do with one image; small and picklable, sent to a worker."""

    source: str
    name: str
    methods: tuple[str, ...]
    params: dict = field(default_factory=dict)  # method -> resolved parameters
    model: str | None = None  # None: the bundled model
    labels: str | None = None  # label file of this image, if any
    max_pixels: int | None = LARGE_PIXELS  # above this: the tiled whole-slide path


def _cells_table(cells, classifications, class_names) -> pd.DataFrame:
    rows = []
    for i, (cell, result) in enumerate(zip(cells, classifications, strict=True)):
        r0, c0, r1, c1 = (int(v) for v in cell.bbox)
        row = {
            "cell": i + 1,
            "min_row": r0,
            "min_col": c0,
            "max_row": r1,
            "max_col": c1,
            "score": float(cell.score),
            "area": cell.area,
            "class": result.class_name,
            "malignant_probability": float(result.malignant_probability),
        }
        row.update({f"P({n})": float(result.probabilities[n]) for n in class_names})
        row.update(_ood_columns(result))
        rows.append(row)
    columns = ["cell", "min_row", "min_col", "max_row", "max_col", "score", "area", "class"]
    columns += ["malignant_probability"] + [f"P({n})" for n in class_names]
    columns += ["ood_score", "unfamiliar"]
    return pd.DataFrame(rows, columns=columns)


def _ood_columns(result) -> dict:
    """The cell's OOD score and whether it passes the model's threshold; NaN and None
    when the model has no OOD fit (so one store's tables keep the same columns)."""
    score = getattr(result, "ood_score", None)
    return {
        "ood_score": np.nan if score is None else float(score),
        "unfamiliar": getattr(result, "unfamiliar", None),
    }


def _explain_cells(image, cells, job: Job, model):
    """Maps per method (n_cells, rows, cols), one row per cell x method, ROI transforms."""
    from ..explain import explain_full

    maps, rows, items = {}, [], []
    shape = image.shape[:2]
    for method in job.methods:
        stack = np.zeros((len(cells), *shape), np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # all cells in one compiled call; the cells carry their masks
            results = (
                explain_full(image, method, model, bbox=list(cells), **job.params.get(method, {}))
                if cells
                else []
            )
        for i, result in enumerate(results):
            stack[i] = result.map
            rows.append(
                {
                    "cell": i + 1,
                    "method": method,
                    "target": int(result.target),
                    "target_name": result.target_name,
                    "logit": float(result.logit),
                    "empty": bool(result.empty),
                    "notes": " ".join(result.notes),
                }
            )
            items.append((i + 1, method, result.input_map, result.transform))
        maps[method] = stack
    return maps, pd.DataFrame(rows), items


def _quantify(items, labels, names) -> pd.DataFrame:
    from ..quantify import quantify_many

    entries = [
        {"cell": cell, "method": method, "relevance": m, "transform": t, "labels": labels}
        for cell, method, m, t in items
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantify_many(entries, label_names=names or None)


def full_maps_bytes(n_cells: int, shape, methods) -> int:
    """Bytes of the full-size maps of `n_cells` cells on an image of `shape`."""
    return 4 * n_cells * int(shape[0]) * int(shape[1]) * len(methods)


def analyse(job: Job) -> dict:
    """Detect, classify, explain and (with labels) quantify one image.

    Returns a dict with ``error`` set (and nothing else computed) when the image or its
    labels cannot be read, so one bad file never stops a run.
    """
    from ..cells import cells_to_labels, detect_cells
    from ..images import ImageError, read_image
    from ..model.classify import classify, load_model
    from ..tiles import image_shape, is_large

    start = time.perf_counter()
    base = {"source": job.source, "name": job.name}
    try:
        large = is_large(job.source, job.max_pixels)
        shape = image_shape(job.source) if large else None
        image = None if large else read_image(job.source)
    except (ImageError, OSError) as error:
        return {**base, "error": str(error)}
    shape = image.shape if image is not None else shape
    labels, names = None, {}
    if job.labels is not None:
        from ..labels import load_labels

        try:
            labels, names = load_labels(job.labels)
        except (ValueError, OSError) as error:
            return {**base, "error": f"labels {Path(job.labels).name}: {error}"}
        if labels.shape != tuple(shape[:2]):
            return {
                **base,
                "error": f"labels {Path(job.labels).name} have shape {labels.shape}, the "
                f"image {tuple(shape[:2])}; they must cover the same pixels.",
            }
    model = load_model(job.model)
    if large:
        from .whole_slide import analyse_whole_slide

        try:
            return analyse_whole_slide(job, model, labels, names)
        except (ImageError, OSError, ValueError) as error:
            return {**base, "error": str(error)}
    try:
        cells = detect_cells(image)
        if full_maps_bytes(len(cells), image.shape, job.methods) > FULL_MAPS_MAX_BYTES:
            from .whole_slide import per_cell_result

            return per_cell_result(job, model, image, cells, labels, names, start)
        results = classify(image, model, bbox=list(cells)) if cells else []
        maps, map_rows, items = _explain_cells(image, cells, job, model)
    except ValueError as error:  # e.g. an image the chain cannot take (3-D stack)
        return {**base, "error": str(error)}
    return {
        **base,
        "error": None,
        "image": image,
        "cell_labels": cells_to_labels(cells, image.shape),
        "cells": _cells_table(cells, results, model.class_names),
        "maps": maps,
        "map_rows": map_rows,
        "transforms": [t.as_dict() for c, m, _, t in items if m == job.methods[0]],
        "labels": labels,
        "label_names": {int(k): str(v) for k, v in names.items()},
        "quantification": None if labels is None else _quantify(items, labels, names),
        "seconds": time.perf_counter() - start,
        "worker_pid": os.getpid(),
    }


def analyse_into(job: Job, store_url: str) -> dict:
    """`analyse`, then write the image into the store; return a small summary."""
    from .store import BatchStore

    result = analyse(job)
    if not result.get("error"):
        write_result(BatchStore.attach(store_url), result)
    return summary_of(result)


def write_result(store, result: dict) -> None:
    """Write an `analyse` result into an open `BatchStore` (whole slides chunk-wise).

    Raises `store.StoreError` (saying what is kept and what to do) when the write
    fails, e.g. on a full disk; the image then stays unmarked and is redone on resume.
    """
    import dask

    from .store import write_failure

    # ome-zarr writes through dask, whose default on a worker is the cluster itself: the
    # arrays would travel to the scheduler as a task graph ("Sending large graph ..."
    # for a 2k image). They are written here, in this process.
    try:
        with dask.config.set(scheduler="synchronous"):
            if result.get("whole_slide"):
                from .lazy_store import write_whole_slide

                write_whole_slide(store, result)
            else:
                store.write_image_result(result)
    except OSError as error:
        raise write_failure(store.url, error, f"image {result['name']}") from None


def summary_of(result: dict) -> dict:
    """What the runner needs to know of a result (no arrays)."""
    keep = {k: result[k] for k in ("source", "name", "error") if k in result}
    return {**keep, "n_cells": len(result["cells"]) if "cells" in result else 0}
