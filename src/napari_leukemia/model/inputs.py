"""Turn images into model inputs exactly as a model's metadata says.

The same functions serve training, evaluation, ``classify`` and the widgets, so a
model always sees images prepared the way it was trained.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from ..images import as_rgb, check_2d, value_range
from ..preprocess import document000_pipeline, resize
from ..roi import _FILL_SAMPLE, RoiSource, RoiTransform, clip_bbox, square_window
from .cell_context import GROW_PX, cell_only_rois, full_mask
from .metadata import InputSpec

#: At most this many cells per field are used (the most confident ones).
MAX_CELLS_PER_FIELD = 8


def convert(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize an image (field or ROI) to the model's input and apply its pipeline."""
    check_2d(image)
    if spec.pipeline == "document000":
        if spec.size[0] != spec.size[1]:
            raise ValueError("The document 000 pipeline needs a square input size.")
        return document000_pipeline(image, spec.size[0])
    if spec.pipeline == "rgb":
        rgb = as_rgb(image)
        same_size = rgb.shape[:2] == tuple(spec.size)  # a ROI cut at the input's size
        return (rgb if same_size else resize(rgb, spec.size)).astype(np.float32)
    raise ValueError(f"Unknown preprocessing pipeline {spec.pipeline!r} in the model metadata.")


def cell_inputs(
    image: np.ndarray, bboxes, spec: InputSpec, masks=None, grow_px: int = GROW_PX
) -> tuple[np.ndarray, list]:
    """Model inputs (N, rows, cols, channels) for the cells in `bboxes`, and their ROI
    transforms. The image is prepared once for all cells (value range, padding colour),
    so the cost per cell does not grow with the image. For a model that reads the cell
    alone (``spec.context == "cell"``) everything but the cell is blanked; `masks`
    (full-image bool masks, one per box) are the cells' own, else the detector's;
    `grow_px` is how far they are grown (more only for training with mask jitter)."""
    if spec.context == "cell":  # blanked outside the cell: no padding colour needed
        rois = cell_only_rois(image, bboxes, spec, masks, grow_px)
    else:
        source = _roi_source(image, bboxes, spec)
        rois = [source.extract(bbox, spec.size, spec.margin) for bbox in bboxes]
    return np.stack([convert(roi, spec) for roi, _ in rois]), [t for _, t in rois]


def _roi_source(image, bboxes, spec: InputSpec) -> RoiSource:
    """The image ready for cutting ROIs, with its padding colour for windows past it."""
    pad = _unused_pad(image, bboxes, spec)
    fill = _median_fill_8bit(image) if pad is None else None
    if fill is not None:  # the default padding colour, counted instead of sorted
        return replace(RoiSource.of(image, pad_value=0, rgb=True), fill=fill)
    return RoiSource.of(image, pad_value=pad, rgb=True)


def _unused_pad(image, bboxes, spec: InputSpec):
    """A pad value when no ROI window reaches past the image, else None (the default).

    Why: the default padding colour is the image's median, which costs more than the
    ROI itself on a 224x224 field (~half of a selected-cell classify). When every window
    lies inside the image nothing is padded, so any valid value gives the same ROIs; one
    of the image's own pixels is always within its value range.
    """
    array = np.asarray(image)
    rows, cols = array.shape[:2]
    try:
        for bbox in bboxes:
            top, left, bottom, right = square_window(
                clip_bbox(bbox, (rows, cols))[0], spec.margin, (rows, cols)
            )
            if top < 0 or left < 0 or bottom > rows or right > cols:
                return None
    except (TypeError, ValueError):
        return None  # let the ROI extraction report the bad box
    if array.size == 0 or array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        return None
    return float(array.reshape(-1)[0])


def _median_fill_8bit(image) -> np.ndarray | None:
    """`RoiSource`'s default padding colour of an 8-bit gray or RGB image, from counts.

    The same numbers (the per-channel median of the same pixel grid, converted the same
    way) without sorting the pixels: a median over 50,000 pixels was half of the time of
    classifying one cell near the image's edge. None for other images (the default
    path computes it).
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    ):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high, _ = value_range(array)
    rows, cols = array.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(rows * cols / _FILL_SAMPLE))))
    sample = array[::step, ::step].reshape(-1, 1 if array.ndim == 2 else 3)
    n = len(sample)

    def unit(value) -> float:
        return min(max((float(value) - low) / (high - low), 0.0), 1.0)

    fill = []
    for channel in sample.T:
        cumulative = np.cumsum(np.bincount(channel, minlength=256))

        def kth(k, cumulative=cumulative):  # the k-th smallest value (0-based)
            return int(np.searchsorted(cumulative, k + 1))

        if n % 2:
            fill.append(unit(kth(n // 2)))
        else:
            fill.append((unit(kth(n // 2 - 1)) + unit(kth(n // 2))) / 2.0)
    return np.array(fill * 3 if len(fill) == 1 else fill, dtype=np.float64)


def cell_input(
    image: np.ndarray, bbox, spec: InputSpec, mask=None
) -> tuple[np.ndarray, RoiTransform]:
    """The model input for the cell in `bbox`, and the ROI transform back to `image`
    (`mask`: the cell's full-image mask, when known; see `cell_inputs`)."""
    batch, transforms = cell_inputs(image, [bbox], spec, None if mask is None else [mask])
    return batch[0], transforms[0]


def own_masks(bbox, shape) -> list | None:
    """Full-image masks of detected cells given as `bbox` (one `Cell` or a sequence of
    them), else None: a cell-only model then needs no second detection to find them."""
    items = bbox if isinstance(bbox, list | tuple) else [bbox]
    if len(shape) >= 2 and items and all(hasattr(c, "mask") and hasattr(c, "bbox") for c in items):
        return [full_mask(c, shape) for c in items]
    return None


def field_cells(image: np.ndarray, max_cells: int = MAX_CELLS_PER_FIELD):
    """The most confident detected cells of a field (at most `max_cells`)."""
    from ..cells import detect_cells

    return detect_cells(image)[:max_cells]


def field_inputs(
    image: np.ndarray, spec: InputSpec, grow_px: int = GROW_PX
) -> tuple[np.ndarray, list]:
    """All model inputs for one field image: one per cell, or the whole field
    (`grow_px`: see `cell_inputs`).

    Returns (batch of inputs, list of cells used; empty for field models or when no
    cell was found, in which case the whole field is used as a single input).
    """
    if spec.kind == "cell":
        cells = field_cells(image)
        if cells:
            masks = [full_mask(c, np.shape(image)) for c in cells]
            return cell_inputs(image, [c.bbox for c in cells], spec, masks, grow_px)[0], cells
        return convert(image, spec)[None], []
    return convert(image, spec)[None], []


def bbox_batch(bbox) -> list | None:
    """The boxes of a batch of cells, or None when `bbox` is one box.

    A batch is a sequence of boxes (min_row, min_col, max_row, max_col), an (N, 4)
    array, or a sequence of detected cells (anything with a ``bbox``); an empty
    sequence is an empty batch. One box is four numbers, or one cell.
    """
    if hasattr(bbox, "bbox"):
        return None
    if isinstance(bbox, np.ndarray):
        if bbox.ndim == 2:
            return [tuple(row) for row in bbox]
        return None
    if isinstance(bbox, list | tuple):
        if len(bbox) == 0:
            return []
        first = bbox[0]
        if hasattr(first, "bbox") or np.ndim(first) == 1:
            return [getattr(b, "bbox", b) for b in bbox]
    return None


def single_bbox(bbox):
    """One box as given: four numbers, or a detected cell's ``bbox``."""
    return getattr(bbox, "bbox", bbox)


def refuse_roi_stack(spec: InputSpec) -> None:
    """A model that reads the cell alone needs the field around each cell to blank it."""
    if spec.context == "cell":
        raise ValueError(
            "This model reads the cell alone: its inputs keep only the cell's detector "
            "mask and blank the rest, which a bare ROI does not allow. Pass the field "
            "image with bbox= (one box or a list of boxes) instead of a stack of ROIs."
        )


def roi_stack(image) -> list | None:
    """The ROIs of a stack, or None when `image` is one image (or one path).

    A stack is a list or tuple of 2-D images (any sizes; each is prepared on its own)
    or a 4-D array (N, rows, cols, channels).
    """
    if isinstance(image, list | tuple):
        return list(image)
    if isinstance(image, np.ndarray) and image.ndim == 4:
        return list(image)
    return None
