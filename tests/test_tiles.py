"""Whole-slide images: tiles, tiled detection with de-duplication, and the tiled batch path.

The large field repeats one synthetic smear field (one stain, as on one slide) in a grid
whose period (375 px) does not divide the tiles (512 px), so many cells straddle tile
borders. Whole-image detection at the same work factor is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_leukemia.cells import cells_to_labels, detect_cells
from napari_leukemia.synthetic import make_smear
from napari_leukemia.tiles import (
    SAME_CELL,
    _shared_share,
    detect_cells_tiled,
    image_shape,
    open_lazy,
    tile_grid,
)

FIELD = 375
TILE, OVERLAP, FACTOR = 512, 160, 2


def large_field(seed: int, reps: int = 4) -> np.ndarray:
    return np.tile(make_smear(seed=seed, shape=(FIELD, FIELD), n_leukocytes=(4, 5)).image,
                   (reps, reps, 1))  # fmt: skip


def test_tile_cores_partition_the_image_and_tiles_start_on_the_work_grid():
    shape = (1450, 1403)
    tiles = tile_grid(shape, TILE, OVERLAP, align=FACTOR)
    owners = np.zeros(shape, np.int32)
    for t in tiles:
        assert t.rows[0] % FACTOR == 0 and t.cols[0] % FACTOR == 0
        assert t.rows[1] - t.rows[0] >= TILE and t.cols[1] - t.cols[0] >= TILE
        assert t.rows[0] <= t.core_rows[0] < t.core_rows[1] <= t.rows[1]
        # a core keeps at least half the overlap away from the tile's cut edges
        for (lo, hi), (clo, chi), n in ((t.rows, t.core_rows, shape[0]),
                                         (t.cols, t.core_cols, shape[1])):  # fmt: skip
            assert lo == 0 or clo - lo >= OVERLAP // 2 - FACTOR
            assert hi == n or hi - chi >= OVERLAP // 2 - FACTOR
        owners[t.core_rows[0] : t.core_rows[1], t.core_cols[0] : t.core_cols[1]] += 1
    assert owners.min() == owners.max() == 1
    with pytest.raises(ValueError, match="larger than overlap"):
        tile_grid(shape, 100, 100)


@pytest.mark.parametrize("seed", [0, 3])
def test_tiled_detection_finds_each_cell_of_the_whole_image_once(seed):
    """Every cell of whole-image detection is found exactly once, its box within one
    working pixel (each tile measures its own slide and stain colours, which can move a
    mask's edge by one block), and no cell is reported twice."""
    image = large_field(seed)
    whole = detect_cells(image, max_work_side=image.shape[0] // FACTOR)
    tiled = detect_cells_tiled(image, tile=TILE, overlap=OVERLAP, work_factor=FACTOR)
    tiles = tile_grid(image.shape, TILE, OVERLAP, align=FACTOR)
    cuts = [({t.rows[0], t.rows[1]} - {0, image.shape[0]}) for t in tiles]
    row_cuts = set().union(*cuts)  # the field is square: the same cuts along columns
    straddling = [
        c for c in whole
        if any(c.bbox[0] < cut < c.bbox[2] or c.bbox[1] < cut < c.bbox[3] for cut in row_cuts)
    ]  # fmt: skip
    assert len(straddling) >= 5, "the field should put cells across tile borders"
    assert len(tiled) == len(whole)
    for cell in whole:
        same = [t for t in tiled if _shared_share(cell, t) >= SAME_CELL]
        assert len(same) == 1, f"cell {cell.bbox} found {len(same)} times"
        assert max(abs(a - b) for a, b in zip(cell.bbox, same[0].bbox, strict=True)) <= FACTOR
    for i, a in enumerate(tiled):
        assert all(_shared_share(a, b) < SAME_CELL for b in tiled[i + 1 :])
    scores = [c.score for c in tiled]
    assert scores == sorted(scores, reverse=True)


def test_lazy_tiff_gives_the_same_cells_as_the_array(tmp_path):
    image = large_field(0, reps=3)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib", photometric="rgb")
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.moveaxis(image, -1, 0), tile=(256, 256),
                     photometric="rgb", planarconfig="separate")  # fmt: skip
    assert image_shape(path) == image_shape(planar) == image.shape
    lazy = open_lazy(planar)
    assert hasattr(lazy, "dask") and np.array_equal(np.asarray(lazy[100:300, 50:90]),
                                                    image[100:300, 50:90])  # fmt: skip
    from_file = detect_cells_tiled(path, tile=TILE, overlap=OVERLAP)
    from_array = detect_cells_tiled(image, tile=TILE, overlap=OVERLAP)
    assert from_file and [c.bbox for c in from_file] == [c.bbox for c in from_array]


def test_unreadable_slides_raise_image_errors_that_name_the_file(tmp_path):
    from napari_leukemia.images import ImageError

    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not a tiff")
    for call in (image_shape, open_lazy):
        with pytest.raises(ImageError, match="broken.tif could not be read"):
            call(broken)
        with pytest.raises(ImageError, match="No image file"):
            call(tmp_path / "missing.tif")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((5, 40, 40), np.uint8))
    with pytest.raises(ImageError, match="one 2-D gray, RGB or RGBA plane"):
        open_lazy(stack)


def test_batch_takes_the_tiled_path_for_a_large_tiff(tmp_path):
    """A TIFF above `max_pixels` is analysed tile by tile; the store holds the same image
    pyramid as the normal path, the tiled cells as labels, and per-cell calls and maps
    equal to classifying / explaining those cells on the whole image."""
    from napari_leukemia.batch import run_batch
    from napari_leukemia.batch.store import pyramid
    from napari_leukemia.explain import explain_full
    from napari_leukemia.model.classify import classify, load_model

    image = large_field(1, reps=3)[:1100, :1050]
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, tile=(256, 256), compression="zlib", photometric="rgb")
    out = tmp_path / "study.zarr"
    report = run_batch([path], out, methods=["grad_cam"], workers=1, progress=False,
                       max_pixels=1000 * 1000)  # fmt: skip
    assert (report.analysed, report.failed) == (1, 0)
    group = zarr.open_group(str(out), mode="r")["images/slide"]
    assert group.attrs["napari_leukemia"]["whole_slide"] is True
    levels, transforms = pyramid(np.moveaxis(image, -1, 0))
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    assert [d["coordinateTransformations"] for d in datasets] == transforms
    for k, level in enumerate(levels):
        assert np.array_equal(group[f"s{k}"][...], level)

    cells = detect_cells_tiled(image)
    table = report.tables["cells"]
    assert len(table) == len(cells) == report.cells > 0
    boxes = table[["min_row", "min_col", "max_row", "max_col"]].to_numpy()
    assert [tuple(b) for b in boxes] == [c.bbox for c in cells]
    labels = group["labels/cells/s0"][...]
    assert np.array_equal(labels, cells_to_labels(cells, image.shape))

    model = load_model(None)
    some = cells[:6]
    calls = classify(image, model, bbox=some)
    for i, call in enumerate(calls):
        for name in model.class_names:
            assert table[f"P({name})"][i] == pytest.approx(call.probabilities[name], abs=1e-5)
    maps = group["maps"]
    assert maps.attrs["napari_leukemia"]["space"] == "model_input"
    stored = maps["grad_cam"][: len(some)]
    for i, result in enumerate(explain_full(image, "grad_cam", model, bbox=some)):
        np.testing.assert_allclose(stored[i], result.input_map, atol=1e-5 * np.abs(
            result.input_map).max() + 1e-7)  # fmt: skip
        assert maps.attrs["napari_leukemia"]["roi_transforms"][i] == result.transform.as_dict()
