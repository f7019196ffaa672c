"""Write a whole-slide result into the batch store without holding its full-size arrays.

The layout is the one of `store` (same groups, NGFF metadata, tables and completion
mark), with two differences that keep memory bounded:

* the image pyramid is written level by level, chunk by chunk: level 0 from the lazy
  source, each further level from the level just written (the same 2x2 means, or every
  second pixel for labels, as `store.pyramid`); the cell label image is painted one
  chunk at a time from the cells' bbox-local masks;
* ``maps/<method>`` holds each cell's map on the model input, float32 (cell, v, u), not
  a full-size map per cell. ``maps`` attributes say so (``"space": "model_input"``) and
  carry ``roi_transforms``: cell ``i``'s map pixel (v, u) covers the image pixels from
  ``origin + (v, u) * scale`` over ``scale`` pixels (`roi.RoiTransform`), so a viewer
  shows it with ``scale=scale`` and ``translate=RoiTransform.translate``, or pastes it
  with `explain.api.map_to_image`.
"""

from __future__ import annotations

import numpy as np

from .store import ATTR, CELL_COLOURS, _halve, completed_entry

#: Chunk side (y and x) of every level written here.
CHUNK = 1024
#: Levels are halved while their smaller side stays at least this long (as `store`).
SMALLEST = 64


def _level_transforms(k: int, lead: int, labels: bool) -> list[dict]:
    f = float(2**k)
    shift = 0.0 if labels else (f - 1) / 2
    return [
        {"type": "scale", "scale": [1.0] * lead + [f, f]},
        {"type": "translation", "translation": [0.0] * lead + [shift, shift]},
    ]


def _store_level(group, name: str, array, axes: str) -> None:
    """Write a dask array as the zarr array `group/name`, one chunk at a time."""
    import dask.array as da

    chunks = (*array.shape[:-2], CHUNK, CHUNK)
    target = group.create_array(
        name, shape=array.shape, dtype=array.dtype, chunks=chunks,
        dimension_names=list(axes),
    )  # fmt: skip
    da.store(array.rechunk(chunks), target, lock=False, scheduler="synchronous")


def _halved(level, labels: bool):
    """The next pyramid level of a dask array whose chunks are even but the last."""
    import dask.array as da

    def half(n: int) -> int:
        return (n + 1) // 2 if labels else n // 2

    chunks = (*level.chunks[:-2], tuple(map(half, level.chunks[-2])),
              tuple(map(half, level.chunks[-1])))  # fmt: skip
    return da.map_blocks(_halve, level, labels, chunks=chunks, dtype=level.dtype)


def write_pyramid(group, level0, axes: str, labels: bool = False, name: str | None = None):
    """Write `level0` (dask array, ..., y, x) and its halvings as an NGFF multiscale."""
    _store_level(group, "s0", level0, axes)
    _write_levels(group, axes, labels, name)


def _write_levels(group, axes: str, labels: bool, name: str | None) -> None:
    """Halve the written level ``s0`` of `group` into ``s1``, ``s2``, ..., then write
    the multiscale metadata."""
    import dask.array as da
    from ome_zarr.writer import write_multiscales_metadata

    datasets, k = [], 0
    while True:
        written = da.from_zarr(group[f"s{k}"])
        transforms = _level_transforms(k, written.ndim - 2, labels)
        datasets.append({"path": f"s{k}", "coordinateTransformations": transforms})
        if min(written.shape[-2:]) // 2 < SMALLEST:
            break
        _store_level(group, f"s{k + 1}", _halved(written, labels), axes)
        k += 1
    write_multiscales_metadata(group, datasets=datasets, axes=axes, name=name)


def _image_level0(source):
    """The source image as a dask array in store axis order ((c,) y, x)."""
    import dask.array as da

    from ..tiles import open_lazy

    image = open_lazy(source)
    if not isinstance(image, da.Array):
        image = da.from_array(image, chunks=(CHUNK, CHUNK, *image.shape[2:]))
    if image.ndim == 3:
        return image.transpose(2, 0, 1), "cyx"
    return image, "yx"


def _paint_cells(target, cells) -> None:
    """Cell ``i`` as value ``i + 1`` in the zarr array `target`, chunk by chunk; where
    masks overlap the earlier (higher-scored) cell keeps the pixel, as `cells_to_labels`."""
    rows, cols = target.shape
    boxes = np.array([c.bbox for c in cells], np.int64).reshape(-1, 4)
    for top in range(0, rows, CHUNK):
        for left in range(0, cols, CHUNK):
            bottom, right = min(top + CHUNK, rows), min(left + CHUNK, cols)
            hit = np.flatnonzero((boxes[:, 0] < bottom) & (boxes[:, 2] > top)
                                 & (boxes[:, 1] < right) & (boxes[:, 3] > left))  # fmt: skip
            if not hit.size:
                continue
            block = np.zeros((bottom - top, right - left), np.int32)
            for i in hit:
                r0, c0, r1, c1 = boxes[i]
                t, l_, b, r = max(r0, top), max(c0, left), min(r1, bottom), min(c1, right)
                sub = np.asarray(cells[i].mask, bool)[t - r0 : b - r0, l_ - c0 : r - c0]
                region = block[t - top : b - top, l_ - left : r - left]
                region[sub & (region == 0)] = i + 1
            target[top:bottom, left:right] = block


def _write_cell_labels(group, result) -> None:
    from ome_zarr.writer import write_label_metadata

    table = result["cells"]
    labels = group.require_group("labels").create_group("cells")
    rows, cols = result["shape"]
    s0 = labels.create_array("s0", shape=(rows, cols), dtype="int32",
                             chunks=(CHUNK, CHUNK), dimension_names=["y", "x"])  # fmt: skip
    _paint_cells(s0, result["cell_list"])
    _write_levels(labels, "yx", True, "cells")
    colours = [{"label-value": int(c), "rgba": [*CELL_COLOURS[(int(c) - 1) % 5], 255]}
               for c in table["cell"]]  # fmt: skip
    properties = [
        {"label-value": int(c), "class": str(k), "score": round(float(s), 4)}
        for c, k, s in zip(table["cell"], table["class"], table["score"], strict=True)
    ]
    write_label_metadata(group["labels"], "cells", colors=colours, properties=properties)


def _write_maps(group, result) -> None:
    maps = group.create_group("maps")
    maps.attrs[ATTR] = {
        "axes": ["cell", "v", "u"],
        "space": "model_input",
        "aligned_on": "../s0 through roi_transforms (one per cell, image level 0 pixels)",
        "roi_transforms": result["transforms"],
    }
    for method, stack in result["maps"].items():
        array = maps.create_array(
            method, shape=stack.shape, dtype="float32",
            chunks=(max(1, min(len(stack), 256)), *stack.shape[1:]),
        )  # fmt: skip
        if stack.size:
            array[...] = stack
        array.attrs[ATTR] = {"method": method}


def write_whole_slide(store, result: dict) -> None:
    """Write one `whole_slide.analyse_whole_slide` result, then mark it complete."""
    import dask.array as da

    name = result["name"]
    if store.fs.exists(f"{store.path}/images/{name}"):  # a half-written earlier try
        store.fs.rm(f"{store.path}/images/{name}", recursive=True)
    group = store.root["images"].create_group(name)
    level0, axes = _image_level0(result["source"])
    write_pyramid(group, level0, axes, name=name)
    _write_cell_labels(group, result)
    if result["labels"] is not None:
        morphology = group["labels"].create_group("morphology")
        write_pyramid(morphology, da.from_array(np.asarray(result["labels"]),
                                                chunks=(CHUNK, CHUNK)), "yx", labels=True,
                      name="morphology")  # fmt: skip
        _morphology_metadata(group, result)
    _write_maps(group, result)
    store._write_image_tables(name, result)
    group.attrs[ATTR] = completed_entry(result, whole_slide=True)


def _morphology_metadata(group, result) -> None:
    from ome_zarr.writer import write_label_metadata

    from ..labels import MORPHOLOGY_COLORS
    from .store import _rgba

    values = [int(v) for v in np.unique(np.asarray(result["labels"])) if v]
    names = result["label_names"]
    colours = [
        {"label-value": v, "rgba": [int(round(255 * c)) for c in _rgba(MORPHOLOGY_COLORS[v])]}
        for v in values
        if v in MORPHOLOGY_COLORS
    ]
    properties = [{"label-value": v, "name": names.get(v, f"label {v}")} for v in values]
    write_label_metadata(group["labels"], "morphology", colors=colours, properties=properties)
