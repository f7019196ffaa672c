"""Turn images into model inputs exactly as a model's metadata says.

The same functions serve training, evaluation, ``classify`` and the widgets, so a
model always sees images prepared the way it was trained.
"""

from __future__ import annotations

import numpy as np

from ..images import as_rgb, check_2d
from ..preprocess import document000_pipeline, resize
from ..roi import RoiSource, RoiTransform
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
        return resize(as_rgb(image), spec.size).astype(np.float32)
    raise ValueError(f"Unknown preprocessing pipeline {spec.pipeline!r} in the model metadata.")


def cell_inputs(image: np.ndarray, bboxes, spec: InputSpec) -> tuple[np.ndarray, list]:
    """Model inputs (N, rows, cols, channels) for the cells in `bboxes`, and their ROI
    transforms. The image is prepared once for all cells (value range, padding colour),
    so the cost per cell does not grow with the image."""
    source = RoiSource.of(image, rgb=True)
    rois = [source.extract(bbox, spec.size, spec.margin) for bbox in bboxes]
    return np.stack([convert(roi, spec) for roi, _ in rois]), [t for _, t in rois]


def cell_input(image: np.ndarray, bbox, spec: InputSpec) -> tuple[np.ndarray, RoiTransform]:
    """The model input for the cell in `bbox`, and the ROI transform back to `image`."""
    batch, transforms = cell_inputs(image, [bbox], spec)
    return batch[0], transforms[0]


def field_cells(image: np.ndarray, max_cells: int = MAX_CELLS_PER_FIELD):
    """The most confident detected cells of a field (at most `max_cells`)."""
    from ..cells import detect_cells

    return detect_cells(image)[:max_cells]


def field_inputs(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, list]:
    """All model inputs for one field image: one per cell, or the whole field.

    Returns (batch of inputs, list of cells used; empty for field models or when no
    cell was found, in which case the whole field is used as a single input).
    """
    if spec.kind == "cell":
        cells = field_cells(image)
        if cells:
            return cell_inputs(image, [c.bbox for c in cells], spec)[0], cells
        return convert(image, spec)[None], []
    return convert(image, spec)[None], []
