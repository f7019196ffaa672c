"""A whole-slide store reopens with its maps on the image grid (issue 12).

The store is written by the tiled batch path (a TIFF above a lowered `max_pixels`), so its
maps are kept on the model input with one ROI transform per cell; the reader pastes them
lazily on the image pyramid, one level of maps per image level.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_leukemia.batch import run_batch
from napari_leukemia.batch.reader import ROLE, read_store
from napari_leukemia.explain.api import map_to_image
from napari_leukemia.roi import RoiTransform

from .test_tiles import large_field


@pytest.fixture(scope="module")
def whole_slide_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole_slide")
    path = root / "slide.tif"
    image = large_field(1, reps=3)[:1100, :1050]
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib", photometric="rgb")
    out = root / "study.zarr"
    report = run_batch([path], out, methods=["grad_cam"], workers=1, progress=False,
                       max_pixels=1000 * 1000)  # fmt: skip
    assert (report.analysed, report.failed) == (1, 0) and report.cells >= 3
    return out, image.shape[:2]


def _map_layer(layers):
    maps = [
        (data, kwargs)
        for data, kwargs, kind in layers
        if kind == "image" and kwargs["metadata"]["napari_leukemia"][ROLE] == "map"
    ]
    assert len(maps) == 1
    return maps[0]


def _centre(values: np.ndarray) -> np.ndarray:
    """Centre of mass of |values| (row, col)."""
    weights = np.abs(values.astype(np.float64))
    rows, cols = np.indices(values.shape)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


def test_whole_slide_maps_open_aligned_on_the_image(whole_slide_store):
    """Each level of a map layer has the image level's grid; a cell's map on level 0 is
    its model-input map pasted through its ROI transform, it lies inside that cell's ROI
    window, which holds the cell's box, and level 1 shows it at half the resolution in
    the same place. (Where in the window its peak falls is the model's business: a
    Grad-CAM peak may sit in the margin just outside the box.)"""
    import zarr

    store, shape = whole_slide_store
    layers = read_store(store)
    images, maps = layers[0][0], _map_layer(layers)[0]
    cells = next(kw["features"] for _, kw, kind in layers if kind == "shapes")
    assert [m.shape[1:] for m in maps] == [i.shape[:2] for i in images]
    assert all(m.shape[0] == len(cells) for m in maps) and maps[0].shape[1:] == shape

    group = zarr.open_group(str(store / "images" / "slide" / "maps"), mode="r")
    stored = group["grad_cam"][...]
    transforms = group.attrs["napari_leukemia"]["roi_transforms"]
    shown = 0
    for i, row in cells.head(6).iterrows():
        t = transforms[i]
        transform = RoiTransform(tuple(t["origin"]), tuple(t["scale"]), tuple(t["image_shape"]))
        pasted = np.asarray(maps[0][i])
        np.testing.assert_array_equal(pasted, map_to_image(stored[i], transform))
        box = row[["min_row", "min_col", "max_row", "max_col"]].to_numpy(int)
        start = np.asarray(transform.origin)
        end = start + np.asarray(transform.scale) * np.asarray(stored[i].shape)
        assert np.all(start <= box[:2]) and np.all(box[2:] <= end), (i, box, start, end)
        if not np.any(stored[i]):
            continue
        rows, cols = np.nonzero(pasted)
        assert rows.min() >= np.floor(start[0]) and rows.max() < np.ceil(end[0])
        assert cols.min() >= np.floor(start[1]) and cols.max() < np.ceil(end[1])
        shown += 1
        # level 1 is the same map at half the resolution: its centre of |relevance|
        # (level-1 pixel j covers level-0 pixels 2j and 2j + 1) falls where level 0's
        # does, up to the window's origin rounded to a whole level-1 pixel (at most half
        # of one: 1 level-0 pixel) and the resampling of a few pixels at the rim
        fine, coarse = _centre(pasted), _centre(np.asarray(maps[1][i]))
        assert np.abs(2 * coarse + 0.5 - fine).max() <= 1.5, (i, fine, coarse)
    assert shown >= 3, "too few cells with a non-empty map to check"


def test_whole_slide_map_layers_are_napari_multiscale_layers(whole_slide_store):
    """napari takes the pasted maps as a multiscale layer with the image's level shapes
    and no transform of its own (the pasting did the aligning)."""
    from napari.layers import Layer

    store, _ = whole_slide_store
    layers = read_store(store)
    image = Layer.create(*layers[0])
    layer = Layer.create(*_map_layer(layers), "image")
    assert layer.multiscale and layer.ndim == 3
    assert [tuple(s[1:]) for s in layer.level_shapes] == [tuple(s[:2]) for s in image.level_shapes]
    assert np.array_equal(layer.scale, [1, 1, 1]) and np.array_equal(layer.translate, [0, 0, 0])
    meta = layer.metadata["napari_leukemia"]
    assert meta["space"] == "model_input" and meta["cells"][0] == 1
