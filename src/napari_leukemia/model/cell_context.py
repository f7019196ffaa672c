"""Blank everything around a cell: the input of models that must read the cell alone.

A model trained on cell ROIs with their surroundings learns the slide around the cell
(stain, red cells, the patient's smear) as much as the cell (see docs/sanity.md). A
model whose `InputSpec.context` is ``"cell"`` sees, in every ROI, only the pixels of the
cell's detector mask grown by `GROW_PX`; everything else is set to `BLANK`, one fixed
colour for every field, so nothing of the field's own slide colour is left either.
The same function prepares training, evaluation, ``classify`` and ``explain`` inputs.
Given the cell's mask, its input does not change, bit for bit, whatever lies outside;
the mask itself comes from the detector on the whole field, whose colour references
(slide, red cells) depend on the field, so other surroundings can move the mask's edge
by a pixel or so.
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage.morphology import isotropic_dilation

from ..roi import RoiSource, RoiTransform, RoiWarning, clip_bbox, extract_roi, square_window

#: The cell's detector mask is grown by this many image pixels (its pale rim).
GROW_PX = 2
#: The colour of everything outside the cell: white, a clean slide (RGB in [0, 1]).
BLANK = 1.0


def cell_masks(image: np.ndarray, bboxes, masks=None, grow_px: int = GROW_PX) -> list[np.ndarray]:
    """The pixels (bool, image rows x cols) of the cell in each box, grown by `grow_px`
    (`GROW_PX` for every model input; training with mask jitter grows them more).

    `masks` are the cells' own full-image masks when known (the cells of
    `detect_cells`). Otherwise the detector runs once on the whole field, as it does
    for training (remembered for the last few images, `napari_leukemia.memo`), and the
    detection that overlaps a box most is its cell; a box with no detection in it stands
    for itself.
    """
    masks = [None] * len(bboxes) if masks is None else list(masks)
    found = None
    grown = []
    for bbox, mask in zip(bboxes, masks, strict=True):
        if mask is None:
            if found is None:
                from ..memo import detected_masks

                found = detected_masks(image)
            mask = best_overlap(found, bbox, np.shape(image))
        grown.append(_grown(np.asarray(mask, bool), grow_px))
    return grown


def _grown(mask: np.ndarray, grow_px: int = GROW_PX) -> np.ndarray:
    """`mask` dilated by `grow_px`, computed only around its pixels (the same result as
    dilating the whole image, a few times faster on a field)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    out = np.zeros(mask.shape, bool)
    if rows.size == 0:
        return out
    pad = grow_px + 1
    top, left = max(rows[0] - pad, 0), max(cols[0] - pad, 0)
    bottom, right = min(rows[-1] + pad + 1, mask.shape[0]), min(cols[-1] + pad + 1, mask.shape[1])
    out[top:bottom, left:right] = isotropic_dilation(mask[top:bottom, left:right], grow_px)
    return out


def cell_only_rois(image: np.ndarray, bboxes, spec, masks=None, grow_px: int = GROW_PX) -> list:
    """(ROI, transform) per box, as `extract_roi` gives them, of the image with every
    pixel outside the cell's grown mask set to `BLANK` *before* resizing, so no pixel
    of the surroundings reaches the ROI, not even through interpolation."""
    source = RoiSource.of(image, rgb=True, padded=False)  # the value range, found once
    shape = source.image.shape[:2]
    out = []
    for bbox, mask in zip(bboxes, cell_masks(image, bboxes, masks, grow_px), strict=True):
        bbox, note = clip_bbox(bbox, shape)
        if note:  # as for any ROI: a box past the image is clipped, and the user told
            warnings.warn(note, RoiWarning, stacklevel=4)
        top, left, bottom, right = square_window(bbox, spec.margin, shape)
        t, l_ = max(top, 0), max(left, 0)
        crop = source.pixels(t, l_, min(bottom, shape[0]), min(right, shape[1]))
        crop = crop.astype(np.float32)  # as the model was trained: float32 before resizing
        crop[~mask[t : t + crop.shape[0], l_ : l_ + crop.shape[1]]] = BLANK
        r0, c0, r1, c1 = bbox
        roi, local = extract_roi(
            crop, (r0 - t, c0 - l_, r1 - t, c1 - l_), spec.size, spec.margin, pad_value=BLANK
        )
        origin = (local.origin[0] + t, local.origin[1] + l_)
        out.append((roi, RoiTransform(origin, local.scale, tuple(shape))))
    return out


def full_mask(cell, shape) -> np.ndarray:
    """A detected `Cell`'s mask placed on a full image of `shape` (outside parts clipped)."""
    rows, cols = shape[:2]
    r0, c0, r1, c1 = (int(v) for v in cell.bbox)
    out = np.zeros((rows, cols), bool)
    top, left, bottom, right = max(r0, 0), max(c0, 0), min(r1, rows), min(c1, cols)
    if bottom > top and right > left:
        out[top:bottom, left:right] = np.asarray(cell.mask, bool)[
            top - r0 : bottom - r0, left - c0 : right - c0
        ]
    return out


def pixels_in_box(masks: list, bbox) -> list[int]:
    """How many pixels of each full-image mask lie inside `bbox` (clipped at 0)."""
    r0, c0, r1, c1 = (int(v) for v in bbox)
    return [int(np.count_nonzero(m[max(r0, 0) : r1, max(c0, 0) : c1])) for m in masks]


def best_overlap(found: list, bbox, shape) -> np.ndarray:
    """The mask in `found` with most pixels inside `bbox`, or the box itself."""
    overlaps = pixels_in_box(found, bbox)
    if overlaps and max(overlaps) > 0:
        return found[int(np.argmax(overlaps))]
    r0, c0, r1, c1 = (int(v) for v in bbox)
    out = np.zeros(shape[:2], bool)
    out[max(r0, 0) : r1, max(c0, 0) : c1] = True
    return out
