"""Where a cut-out cell can go: its mask, the slide colour and cell-free windows.

Helpers of `context_check`, kept apart so each piece is small and testable. All
images here are uint8 RGB (rows, cols, 3).
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import isotropic_dilation

from ..cells import detect_cells
from ..images import as_rgb, check_2d
from ..model.cell_context import full_mask
from ..roi import square_window


class ContextCheckError(ValueError):
    """Input the context check cannot use; the message says what to do."""


def rgb8(image: np.ndarray) -> np.ndarray:
    """`image` (gray, RGB or RGBA, any dtype) as uint8 RGB."""
    check_2d(image)
    return np.round(as_rgb(image) * 255.0).astype(np.uint8)


def channels(image: np.ndarray) -> int:
    """1 for a gray image, else the length of the colour axis."""
    shape = np.shape(image)
    return 1 if len(shape) == 2 else int(shape[2])


def background_colour(rgb: np.ndarray) -> np.ndarray:
    """The slide colour: median of the brightest tenth of the pixels (as `detect_cells`)."""
    pixels = rgb.reshape(-1, 3)
    brightness = pixels.astype(np.int32).sum(axis=1)
    bright = pixels[brightness >= np.quantile(brightness, 0.9)]
    return np.median(bright, axis=0).round().astype(np.uint8)


def cells_mask(cells, shape, grow: int) -> np.ndarray:
    """Union of the cells' masks (each grown by `grow` px) on an image of `shape`."""
    out = np.zeros(shape[:2], bool)
    for cell in cells:
        out |= mask_of(cell, shape)
    return isotropic_dilation(out, grow) if grow > 0 and out.any() else out


def mask_of(cell, shape) -> np.ndarray:
    """A `Cell`'s mask placed on a full image of `shape` (parts outside are clipped)."""
    return full_mask(cell, shape)


def cell_in_box(rgb: np.ndarray, bbox, cells=None):
    """The detected cell that `bbox` holds (most of its mask inside), or a clear error."""
    cells = detect_cells(rgb) if cells is None else cells
    r0, c0, r1, c1 = bbox
    best, best_share = None, 0.0
    for cell in cells:
        full = mask_of(cell, rgb.shape)
        inside = np.count_nonzero(full[r0:r1, c0:c1])
        share = inside / max(np.count_nonzero(full), 1)
        if inside and share > best_share:
            best, best_share = cell, share
    if best is None or best_share < 0.5:
        raise ContextCheckError(
            f"No detected white cell lies inside the box {tuple(bbox)}: the check cuts the "
            "cell out by its detector mask. Put the box on a white cell (Detect cells), "
            "or pass the cell's pixels as mask= (bool array of the image's shape)."
        )
    return best


def user_mask(mask, shape) -> np.ndarray:
    """A user's cell mask, checked: bool, the image's rows x cols, not empty."""
    array = np.asarray(mask)
    if array.shape != tuple(shape[:2]):
        raise ContextCheckError(
            f"The cell mask has shape {array.shape}; it must cover the image, "
            f"{tuple(shape[:2])} (rows, cols)."
        )
    array = array.astype(bool)
    if not array.any():
        raise ContextCheckError(
            "The cell mask is empty: there is no cell to move. Pass the cell's pixels as "
            "True, or leave mask=None to use the detector's mask."
        )
    return array


def free_offsets(occupied: np.ndarray, window, step: int = 4) -> np.ndarray:
    """(N, 2) row/col shifts that move `window` fully inside the image onto cell-free pixels.

    A summed-area table counts occupied pixels under every candidate window position
    (a grid of `step` px), so the search costs one pass over the image.
    """
    rows, cols = occupied.shape
    top, left, bottom, right = window
    side_r, side_c = bottom - top, right - left
    if side_r > rows or side_c > cols:
        return np.zeros((0, 2), int)
    table = np.pad(occupied.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    tops = np.arange(0, rows - side_r + 1, step)
    lefts = np.arange(0, cols - side_c + 1, step)
    t, l_ = np.meshgrid(tops, lefts, indexing="ij")
    b, r = t + side_r, l_ + side_c
    counts = table[b, r] - table[t, r] - table[b, l_] + table[t, l_]
    free = counts == 0
    return np.stack([t[free] - top, l_[free] - left], axis=1)


def spread(offsets: np.ndarray, k: int, avoid_zero: bool) -> list[tuple[int, int]]:
    """Up to `k` offsets far apart (greedy max-min distance, starting nearest the cell)."""
    if avoid_zero:
        offsets = offsets[np.any(offsets != 0, axis=1)]
    if len(offsets) == 0 or k <= 0:
        return []
    points = offsets.astype(float)
    chosen = [int(np.argmin(np.hypot(*points.T)))]
    distance = np.hypot(*(points - points[chosen[0]]).T)
    while len(chosen) < min(k, len(points)):
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 0:
            break
        chosen.append(nxt)
        distance = np.minimum(distance, np.hypot(*(points - points[nxt]).T))
    return [tuple(int(v) for v in offsets[i]) for i in chosen]


def placement_in(occupied: np.ndarray, window) -> tuple[int, int] | None:
    """(0, 0) when `window` is cell-free in the donor, else the nearest free shift, or None."""
    top, left, bottom, right = window
    rows, cols = occupied.shape
    inside = occupied[max(top, 0) : min(bottom, rows), max(left, 0) : min(right, cols)]
    if not inside.any():
        return (0, 0)
    chosen = spread(free_offsets(occupied, window), 1, avoid_zero=False)
    return chosen[0] if chosen else None


def roi_window(bbox, margin: float, shape) -> tuple[int, int, int, int]:
    """The square window the model sees around `bbox` (see `roi.square_window`)."""
    return square_window(bbox, margin, shape)


def paste(donor: np.ndarray, source: np.ndarray, mask: np.ndarray, offset) -> np.ndarray:
    """A copy of `donor` with `source`'s `mask` pixels moved by `offset` (clipped)."""
    out = donor.copy()
    rows, cols = np.nonzero(mask)
    to_r, to_c = rows + offset[0], cols + offset[1]
    keep = (to_r >= 0) & (to_r < out.shape[0]) & (to_c >= 0) & (to_c < out.shape[1])
    out[to_r[keep], to_c[keep]] = source[rows[keep], cols[keep]]
    return out


def shifted(bbox, offset) -> tuple[int, int, int, int]:
    dr, dc = offset
    return (bbox[0] + dr, bbox[1] + dc, bbox[2] + dr, bbox[3] + dc)
