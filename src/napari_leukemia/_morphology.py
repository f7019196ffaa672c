"""Low-overhead, bit-exact stand-ins for the library calls `cells.detect_cells` makes often.

Each function returns exactly what the named scipy / scikit-image call returns for the
inputs `cells` gives it (boolean masks, a 3 x 3 cross), without that call's generic
set-up, which dominates on the detector's small windows (issue 11: a whole field,
detection and classification, in 40 ms; these took detection from 26 to 17 ms). Why by
hand: the detector's masks feed the bundled model, so its output must stay bit for bit
the same, and the library calls are the reference: `tests/test_morphology.py` compares
each with its library call on thousands of random masks, so a library change shows there.
"""

from __future__ import annotations

import numpy as np

#: ``skimage.measure.perimeter`` weights, indexed by the 3 x 3 border code below.
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2
#: Stands for "no pixel on this row" in integer pixel arithmetic.
_FAR = 1 << 40


def erode_cross(mask: np.ndarray) -> np.ndarray:
    """``ndi.binary_erosion(mask, cross)``: outside the image counts as background."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[[0, -1]] = False
    out[:, [0, -1]] = False
    return out


def dilate_cross(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndi.binary_dilation(mask, cross, iterations)``."""
    for _ in range(iterations):
        out = mask.copy()
        out[1:] |= mask[:-1]
        out[:-1] |= mask[1:]
        out[:, 1:] |= mask[:, :-1]
        out[:, :-1] |= mask[:, 1:]
        mask = out
    return mask


def open_cross(mask: np.ndarray) -> np.ndarray:
    """``ndi.binary_opening(mask, cross)`` of a 2-D boolean mask."""
    return dilate_cross(erode_cross(np.asarray(mask, bool)))


def perimeter(mask: np.ndarray) -> float:
    """``skimage.measure.perimeter(mask)`` (4-neighbourhood) of a 2-D boolean mask."""
    mask = np.asarray(mask, bool)
    border = np.pad(mask & ~erode_cross(mask), 1).astype(np.uint8)
    rows, cols = mask.shape
    code = border[1:-1, 1:-1].copy()
    for dr, dc, weight in (
        (-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2),
        (-1, -1, 10), (-1, 1, 10), (1, -1, 10), (1, 1, 10),
    ):  # fmt: skip
        code += weight * border[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
    return np.bincount(code.ravel(), minlength=50) @ _PERIMETER_WEIGHTS


def peaks_in_mask(
    image: np.ndarray, mask: np.ndarray, min_distance: int, threshold: float
) -> np.ndarray:
    """``peak_local_max(image, min_distance, threshold, labels=mask)`` for one label.

    Same peaks in the same order (highest first, ties in raster order): maxima of the
    (2 * `min_distance` + 1)-wide square inside the mask and away from the image border,
    above `threshold`, thinned greedily so that no two are closer than `min_distance`
    (chessboard distance).
    """
    width = min_distance
    inner = np.zeros(mask.shape, bool)
    inner[width:-width, width:-width] = mask[width:-width, width:-width]
    rows, cols = np.flatnonzero(inner.any(axis=1)), np.flatnonzero(inner.any(axis=0))
    if rows.size == 0:
        return np.empty((0, 2), dtype=int)
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    inside = mask[box]
    values = image[box].copy()
    values[~inside] = np.finfo(values.dtype).min
    if values.size == 1:
        candidates = values > threshold
    else:
        candidates = values == _max_filter(values, min_distance)
        if np.all(candidates[inside]):  # a plateau: skimage keeps isolated pixels only
            candidates[:] = False
            candidates[inside ^ open_cross(inside)] = True
        candidates &= values > threshold
    coords = np.nonzero(candidates)
    order = np.argsort(-values[coords], kind="stable")
    coords = np.transpose(coords)[order]
    if min_distance > 1:
        coords = _thin(coords, values.shape, min_distance)
    return coords + np.array([box[0].start, box[1].start])


def _max_filter(values: np.ndarray, reach: int) -> np.ndarray:
    """``ndi.maximum_filter(values, size=2 * reach + 1, mode="nearest")``: the maximum
    over the square window clipped to the array (edge copies change no maximum)."""
    out = values.copy()
    for axis in (0, 1):
        src = out.copy()
        for step in range(1, reach + 1):
            near, far = [slice(None)] * 2, [slice(None)] * 2
            near[axis], far[axis] = slice(None, -step), slice(step, None)
            np.maximum(out[tuple(near)], src[tuple(far)], out=out[tuple(near)])
            np.maximum(out[tuple(far)], src[tuple(near)], out=out[tuple(far)])
    return out


def _thin(coords: np.ndarray, shape: tuple[int, int], spacing: int) -> np.ndarray:
    """Keep each point unless an earlier kept one is closer than `spacing` (chessboard),
    as ``skimage._shared.coord.ensure_spacing`` does."""
    if len(coords) < 2:
        return coords
    reach = spacing - 1
    # points within reach of each point (itself included), from an integral image
    side = 2 * reach + 1
    grid = np.zeros((shape[0] + side, shape[1] + side), np.int32)
    r, c = coords[:, 0], coords[:, 1]
    grid[r + reach + 1, c + reach + 1] = 1
    total = grid.cumsum(axis=0).cumsum(axis=1)
    count = total[r + side, c + side] - total[r, c + side] - total[r + side, c] + total[r, c]
    crowded = count > 1  # only these can be dropped
    taken = np.zeros(shape, bool)
    keep = np.ones(len(coords), bool)
    for i in np.flatnonzero(crowded).tolist():
        r, c = coords[i].tolist()
        if taken[r, c]:
            keep[i] = False
        else:
            taken[max(r - reach, 0) : r + reach + 1, max(c - reach, 0) : c + reach + 1] = True
    return coords[keep]


def convex_area(mask: np.ndarray) -> int:
    """``np.count_nonzero(skimage.morphology.convex_hull_image(mask))`` of a non-empty mask.

    That hull is the convex hull of the midpoints of every pixel's four edges; the count is
    the number of pixel centres inside it or on its outline. Coordinates are doubled so
    that all arithmetic is on integers (exact): each side of the hull is a convex chain
    through the outermost midpoints of every half-pixel row, evaluated at pixel rows.
    """
    nrows, ncols = mask.shape
    filled = mask.any(axis=1)
    first = np.where(filled, 2 * mask.argmax(axis=1), _FAR)
    last = np.where(filled, 2 * (ncols - 1 - mask[:, ::-1].argmax(axis=1)), -_FAR)
    # doubled rows -1, 0, ..., 2 * nrows - 1: pixel rows hold the side midpoints, the
    # rows between them the top and bottom midpoints of the pixels above and below
    lo = np.empty(2 * nrows + 1, np.int64)
    hi = np.empty(2 * nrows + 1, np.int64)
    lo[1::2], hi[1::2] = first - 1, last + 1
    lo[0], lo[-1], hi[0], hi[-1] = first[0], first[-1], last[0], last[-1]
    lo[2:-1:2] = np.minimum(first[:-1], first[1:])
    hi[2:-1:2] = np.maximum(last[:-1], last[1:])
    ys = np.arange(-1, 2 * nrows)
    used = lo < _FAR // 2
    rows = 2 * np.arange(nrows)
    left = _chain_at(ys[used], lo[used], rows)
    right = -_chain_at(ys[used], -hi[used], rows)
    return int(np.maximum(np.minimum(right, ncols - 1) - np.maximum(left, 0) + 1, 0).sum())


def _chain_at(ys: np.ndarray, xs: np.ndarray, at: np.ndarray) -> np.ndarray:
    """ceil(x / 2) on the lower convex chain of points (ys, xs) at rows `at` (doubled);
    a huge value outside the chain's rows."""
    if len(ys) > 2:  # drop points on or right of their neighbours' chord (vectorised)
        dy, dx = ys[1:] - ys[:-1], xs[1:] - xs[:-1]
        turn = dy[:-1] * dx[1:] - dx[:-1] * dy[1:]
        keep = np.ones(len(ys), bool)
        keep[1:-1] = turn > 0
        ys, xs = ys[keep], xs[keep]
    hull: list[tuple[int, int]] = []
    for point in zip(ys.tolist(), xs.tolist(), strict=True):
        while len(hull) >= 2:
            (y0, x0), (y1, x1) = hull[-2], hull[-1]
            if (y1 - y0) * (point[1] - x0) - (x1 - x0) * (point[0] - y0) > 0:
                break
            hull.pop()
        hull.append(point)
    hy, hx = np.array(hull, np.int64).T
    seg = np.minimum(np.maximum(np.searchsorted(hy, at, side="right") - 1, 0), len(hy) - 2)
    y0, y1, x0, x1 = hy[seg], hy[seg + 1], hx[seg], hx[seg + 1]
    out = -((-x0 * (y1 - y0) - (x1 - x0) * (at - y0)) // (2 * (y1 - y0)))
    return np.where((at >= hy[0]) & (at <= hy[-1]), out, _FAR)
