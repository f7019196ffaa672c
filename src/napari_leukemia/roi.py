"""Region-of-interest (ROI) extraction around a cell, with the way back to the image.

A ROI is a square crop around a cell's bounding box plus a margin, resized to the
size a classifier expects. `RoiTransform` maps ROI pixel coordinates back onto the
original image, so that maps computed on the ROI can be drawn where they belong
(napari: ``layer.translate = transform.translate``, ``layer.scale = transform.scale``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .images import ImageWarning, as_array, as_rgb, check_2d, scale_to_unit, value_range
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


class RoiWarning(UserWarning):
    """A ROI request that was adjusted (e.g. a bbox clipped to the image)."""


#: The padding colour is the median of at most about this many pixels (a regular grid).
_FILL_SAMPLE = 1 << 18


def clip_bbox(bbox, image_shape) -> tuple[BBox, str | None]:
    """`bbox` clipped to the image, and a note saying so when it reached past the edges.

    Why: a window is sized from the bbox, so a bbox far beyond the image would need
    memory for pixels that do not exist.
    """
    values = _bbox_values(bbox)
    rows, cols = (int(v) for v in image_shape[:2])
    clipped = (max(values[0], 0), max(values[1], 0), min(values[2], rows), min(values[3], cols))
    if clipped == values:
        return values, None
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        square_window(values, 0.0, (rows, cols))  # raises the empty / outside message
    return clipped, (
        f"The bounding box {values} reaches past the image of shape {(rows, cols)}; "
        f"it was clipped to {clipped}."
    )


def _bbox_values(bbox) -> BBox:
    """Four finite numbers as ints, or ValueError saying what a bbox is."""
    values = np.asarray(bbox, dtype=float).ravel() if np.size(bbox) == 4 else None
    if values is None or not np.all(np.isfinite(values)):
        raise ValueError(
            f"bbox must be four finite numbers (min_row, min_col, max_row, max_col), got {bbox!r}."
        )
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class RoiSource:
    """An image prepared once for many ROIs: its value range and padding colour.

    Why: converting the whole image and taking its median for every cell made the ROI
    step grow with the image; here only each window is converted. With ``rgb=True``
    windows come out as RGB (`as_rgb`), as the classifiers' inputs need.
    """

    image: np.ndarray
    low: float
    high: float
    fill: np.ndarray
    rgb: bool = False

    @classmethod
    def of(cls, image, pad_value=None, rgb: bool = False, padded: bool = True) -> RoiSource:
        """Prepare `image`; `pad_value` is in the image's own value scale (see `extract_roi`).
        With ``padded=False`` no padding colour is prepared: only `pixels` inside the
        image can be taken."""
        array = as_array(image)
        check_2d(array)
        low, high, note = value_range(array)
        if note:
            warnings.warn(note, ImageWarning, stacklevel=3)
        source = cls(array, low, high, np.zeros(0), rgb)
        if not padded:
            return source
        fill = source._median_fill() if pad_value is None else source._pad_fill(pad_value)
        return cls(array, low, high, fill, rgb)

    def pixels(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
        """The image's pixels in rows top:bottom, cols left:right (inside the image),
        converted as the whole image would be: float in [0, 1], RGB when ``rgb``."""
        return self._convert(self.image[top:bottom, left:right])

    def _convert(self, window: np.ndarray) -> np.ndarray:
        unit = np.clip(scale_to_unit(window, self.low, self.high), 0.0, 1.0)
        if self.rgb:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageWarning)
                return as_rgb(unit)
        return unit

    def _median_fill(self) -> np.ndarray:
        """Median colour of the image (slide background), from a grid of at most ~2^18 px."""
        rows, cols = self.image.shape[:2]
        step = max(1, int(np.ceil(np.sqrt(rows * cols / _FILL_SAMPLE))))
        sample = self._convert(self.image[::step, ::step])
        return np.median(sample.reshape(-1, *sample.shape[2:]), axis=0)

    def _pad_fill(self, pad_value) -> np.ndarray:
        """`pad_value` (image scale: 255 is white for uint8) mapped to [0, 1], validated."""
        value = np.asarray(pad_value, dtype=float)
        channels = self.image.shape[2:]
        if value.ndim > 1 or (value.ndim == 1 and (value.shape[0],) != channels):
            raise ValueError(
                f"pad_value must be one number or one per channel {channels}, got {pad_value!r}."
            )
        unit = (value - self.low) / (self.high - self.low)
        if not np.all(np.isfinite(unit)) or unit.min() < -1e-9 or unit.max() > 1 + 1e-9:
            raise ValueError(
                f"pad_value {pad_value!r} is outside the image's value range "
                f"[{self.low:g}, {self.high:g}]; give it in the image's own scale "
                "(e.g. 255 = white for a uint8 image, 1.0 for a float image in [0, 1])."
            )
        if self.rgb and value.ndim == 0:
            return np.full(3, float(np.clip(unit, 0.0, 1.0)))
        return np.clip(unit, 0.0, 1.0)

    def extract(self, bbox: BBox, size=224, margin: float = 0.15):
        """The ROI around `bbox` and its transform (see `extract_roi`)."""
        if not np.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be a finite number >= 0, got {margin}.")
        out_rows, out_cols = _out_shape(size)
        rows, cols = self.image.shape[:2]
        bbox, note = clip_bbox(bbox, (rows, cols))
        if note:
            warnings.warn(note, RoiWarning, stacklevel=3)
        top, left, bottom, right = square_window(bbox, margin, (rows, cols))
        side = bottom - top
        src_top, src_left = max(top, 0), max(left, 0)
        src_bottom, src_right = min(bottom, rows), min(right, cols)
        inner = self._convert(self.image[src_top:src_bottom, src_left:src_right])
        window = np.empty((side, side) + inner.shape[2:], dtype=float)
        window[...] = self.fill
        window[src_top - top : src_bottom - top, src_left - left : src_right - left] = inner
        transform = RoiTransform(
            origin=(float(top), float(left)),
            scale=(side / out_rows, side / out_cols),
            image_shape=(rows, cols),
        )
        return resize(window, (out_rows, out_cols)), transform


def _out_shape(size) -> tuple[int, int]:
    """(rows, cols) of the ROI from an int or a pair, or ValueError."""
    shape = (size, size) if np.isscalar(size) else tuple(size)
    if len(shape) != 2 or not all(float(v).is_integer() and v >= 1 for v in shape):
        raise ValueError(f"size must be a positive int or (rows, cols), got {size!r}.")
    return int(shape[0]), int(shape[1])


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
        (max exclusive), in image pixels. A bbox reaching past the image is clipped to
        it, with a `RoiWarning`.
    size : output side in pixels, or (rows, cols).
    margin : extra context on every side as a fraction of the cell's longer side.
    pad_value : value for parts of the window outside the image, in the image's own
        value scale (255 is white for uint8, 1.0 for float in [0, 1]); one number or one
        per channel. Default: the image's median colour (slide background), so padding
        does not look like a dark cell.

    Returns
    -------
    roi : float array of shape (rows, cols[, channels]) in [0, 1].
    transform : `RoiTransform` from ROI pixels to image pixels.
    """
    return RoiSource.of(image, pad_value).extract(bbox, size, margin)
