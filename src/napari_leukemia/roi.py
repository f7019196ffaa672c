"""Region-of-interest (ROI) extraction around a cell, with the way back to the image.

A ROI is a square crop around a cell's bounding box plus a margin, resized to the
size a classifier expects. `RoiTransform` maps ROI pixel coordinates back onto the
original image, so that maps computed on the ROI can be drawn where they belong
(napari: ``layer.translate = transform.translate``, ``layer.scale = transform.scale``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import check_2d, to_float
from .preprocess import resize

BBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class RoiTransform:
    """Affine map from ROI pixels to image pixels.

    The ROI covers the square window whose top-left pixel corner is `origin` (in
    image pixels) and each ROI pixel spans `scale` image pixels. `origin` may be
    negative when the window reaches past the image edge (that part is padded).
    Point coordinates follow napari and scikit-image: integers are pixel centres.
    """

    origin: tuple[float, float]
    scale: tuple[float, float]
    image_shape: tuple[int, int]

    @property
    def translate(self) -> tuple[float, float]:
        """napari layer ``translate`` that puts a ROI-sized array in place.

        napari places pixel centres at integer world coordinates, so a scaled pixel's
        centre sits half a source pixel in from the window corner.
        """
        return tuple(o + (s - 1.0) / 2.0 for o, s in zip(self.origin, self.scale, strict=True))

    def to_image(self, rows_cols: np.ndarray) -> np.ndarray:
        """Map an (N, 2) array of ROI (row, col) coordinates to image coordinates."""
        points = np.asarray(rows_cols, dtype=float)
        return np.asarray(self.translate) + points * np.asarray(self.scale)

    def to_roi(self, rows_cols: np.ndarray) -> np.ndarray:
        """Map an (N, 2) array of image (row, col) coordinates to ROI coordinates."""
        points = np.asarray(rows_cols, dtype=float)
        return (points - np.asarray(self.translate)) / np.asarray(self.scale)

    def as_dict(self) -> dict:
        """Plain-JSON form, for layer metadata and saved results."""
        return {
            "origin": list(self.origin),
            "scale": list(self.scale),
            "image_shape": list(self.image_shape),
        }


def square_window(bbox: BBox, margin: float, image_shape: tuple[int, int]) -> BBox:
    """Return the square window (min_row, min_col, max_row, max_col) around `bbox`.

    The side is the bbox's longer side times ``1 + 2 * margin``, centred on the bbox.
    The window may extend past the image; `extract_roi` pads that part.
    """
    min_row, min_col, max_row, max_col = (int(v) for v in bbox)
    if max_row <= min_row or max_col <= min_col:
        raise ValueError(f"The bounding box {bbox} is empty; need max > min on both axes.")
    rows, cols = image_shape[:2]
    if max_row <= 0 or max_col <= 0 or min_row >= rows or min_col >= cols:
        raise ValueError(f"The bounding box {bbox} lies outside the image of shape {image_shape}.")
    side = max(max_row - min_row, max_col - min_col) * (1.0 + 2.0 * margin)
    side = max(int(round(side)), 1)
    centre_row, centre_col = (min_row + max_row) / 2.0, (min_col + max_col) / 2.0
    top = int(round(centre_row - side / 2.0))
    left = int(round(centre_col - side / 2.0))
    return top, left, top + side, left + side


def extract_roi(
    image: np.ndarray,
    bbox: BBox,
    size: int | tuple[int, int] = 224,
    margin: float = 0.15,
    pad_value: float | None = None,
) -> tuple[np.ndarray, RoiTransform]:
    """Crop a square around a cell and resize it; return the crop and its transform.

    Parameters
    ----------
    image : 2-D gray, RGB or RGBA image of any dtype (converted to float in [0, 1]).
    bbox : (min_row, min_col, max_row, max_col) of the cell, scikit-image convention
        (max exclusive), in image pixels.
    size : output side in pixels, or (rows, cols).
    margin : extra context on every side as a fraction of the cell's longer side.
    pad_value : value for parts of the window outside the image; default the image's
        median colour (slide background), so padding does not look like a dark cell.

    Returns
    -------
    roi : float array of shape (rows, cols[, channels]).
    transform : `RoiTransform` from ROI pixels to image pixels.
    """
    check_2d(image)
    array = to_float(image)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    out_rows, out_cols = (size, size) if np.isscalar(size) else (int(s) for s in size)
    top, left, bottom, right = square_window(bbox, margin, array.shape[:2])
    side = bottom - top
    rows, cols = array.shape[:2]
    if pad_value is None:
        fill = np.median(array.reshape(-1, *array.shape[2:]), axis=0)
    else:
        fill = pad_value
    window = np.empty((side, side) + array.shape[2:], dtype=float)
    window[...] = fill
    src_top, src_left = max(top, 0), max(left, 0)
    src_bottom, src_right = min(bottom, rows), min(right, cols)
    window[src_top - top : src_bottom - top, src_left - left : src_right - left] = array[
        src_top:src_bottom, src_left:src_right
    ]
    roi = resize(window, (out_rows, out_cols))
    transform = RoiTransform(
        origin=(float(top), float(left)),
        scale=(side / out_rows, side / out_cols),
        image_shape=(rows, cols),
    )
    return roi, transform
