"""Whole-slide images: read them lazily and find their cells tile by tile.

A 10k x 10k RGB scan is 300 MB as uint8 and several GB once the detector works on it in
float32, so it is never loaded at once. `open_lazy` wraps a TIFF as a dask array
(tifffile's zarr view of its tiles or strips); `detect_cells_tiled` reads one tile plus
an overlap at a time and runs `detect_cells` on it.

Tiles and de-duplication
    Tiles of `tile` pixels overlap their neighbours by `overlap` pixels; each tile *owns*
    a core, the tile less half of each overlap, and the cores partition the image. A cell
    is kept from the tile whose core holds its centre, so a cell at most `overlap` wide
    lies whole in that tile. Two tiles see a cell near the core border a little
    differently (each tile measures its own slide, red-cell and nucleus colours), so
    their two detections of it may differ by a working pixel and their two centres may
    fall into no core or into both. Detections are therefore taken in order of
    preference (centre in the own core, then farther from the tile's cut edges) and one
    is dropped when most of its mask (`SAME_CELL`) lies on a cell already kept from
    another tile. Detections cut by a tile's edge inside the image are never kept: the
    neighbouring tile sees that cell whole.

Resolution
    `detect_cells` reduces each tile by `work_factor` (block means); tiles start on
    multiples of it, so every tile sees the same pixel blocks as the whole image would
    at that factor. A whole field (224-640 px) is worked on at factor 1-2, so 2 suits
    scans at the magnification of those fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .images import ImageError

if TYPE_CHECKING:  # the detector (scikit-image) is imported when first used
    from .cells import Cell

#: Images with more pixels than this (rows x cols) take the tiled path in a batch.
LARGE_PIXELS = 4096 * 4096
#: Tile side in image pixels (before reduction by the work factor).
DEFAULT_TILE = 1024
#: Overlap between neighbouring tiles, in image pixels: wider than the largest white
#: cell the detector keeps at the magnifications it is made for (BCCD-like fields with
#: 150-200 px cells), plus a margin for the rim the detector grows on each cell.
DEFAULT_OVERLAP = 256
#: Block-averaging factor of detection (`detect_cells` would pick 2 for a 640 px field).
DEFAULT_WORK_FACTOR = 2
#: A detection whose mask lies at least this share on a cell kept from another tile is
#: the same cell.
SAME_CELL = 0.5
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Tile:
    """One tile: the pixels read (`rows`, `cols`) and the pixels it owns (`core_*`)."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]


def image_shape(source) -> tuple[int, ...]:
    """Shape (rows, cols[, channels]) of an image file or array, without reading pixels."""
    if hasattr(source, "shape"):
        return tuple(int(v) for v in source.shape)
    path = Path(source)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        _check_exists(path)
        try:
            with tifffile.TiffFile(path) as tif:
                return _yx_first(tuple(int(v) for v in tif.series[0].shape))
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as error:
            raise _tiff_error(path, error) from error
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return (img.height, img.width)
    except (UnidentifiedImageError, OSError):
        from .images import read_image

        read_image(path)  # raises the usual message of an unreadable image
        raise


def is_large(source, max_pixels: int | None = LARGE_PIXELS) -> bool:
    """True when the image has more than `max_pixels` pixels (None: never)."""
    if max_pixels is None:
        return False
    rows, cols = image_shape(source)[:2]
    return rows * cols > int(max_pixels)


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise ImageError(f"No image file at {path}.")


def _tiff_error(path: Path, error: Exception) -> ImageError:
    return ImageError(
        f"{path.name} could not be read as a TIFF ({error}); the file may be truncated. "
        "Re-export it, preferably as a tiled TIFF."
    )


def _yx_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Planar colour (3|4, rows, cols) as (rows, cols, 3|4); other shapes as they are."""
    if len(shape) == 3 and shape[0] in (3, 4) and shape[-1] not in (3, 4):
        return (*shape[1:], shape[0])
    return shape


def open_lazy(source):
    """The image as an array read on demand: (rows, cols) or (rows, cols, 3|4).

    A TIFF path becomes a dask array over tifffile's zarr view (level 0 of a pyramid),
    so only the tiles or strips a window touches are decoded. Other files are read whole
    (`read_image`); numpy and dask arrays are returned as they are.
    """
    if hasattr(source, "shape"):
        return source
    path = Path(source)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        from .images import read_image

        return read_image(path)
    import dask.array as da
    import tifffile
    import zarr

    _check_exists(path)
    try:
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        array = da.from_zarr(zarr.open(store, mode="r"))
    except (OSError, ValueError, IndexError, NotImplementedError, tifffile.TiffFileError) as error:
        raise _tiff_error(path, error) from error
    if _yx_first(array.shape) != array.shape:
        array = array.transpose(1, 2, 0)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"{path.name} has shape {array.shape}; a whole-slide image must be one 2-D gray, "
            "RGB or RGBA plane."
        )
    return array


def read_window(image, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Pixels [rows[0]:rows[1], cols[0]:cols[1]] of a numpy or dask image, as numpy."""
    window = image[rows[0] : rows[1], cols[0] : cols[1]]
    if hasattr(window, "compute"):
        return np.asarray(window.compute(scheduler="synchronous"))
    return np.asarray(window)


def _axis_spans(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one axis: starts on multiples of `align`, every
    tile at least `tile` long, neighbours overlapping by at least `overlap`."""
    if length <= tile:
        return [(0, length)]
    stride = max(align, (tile - overlap) // align * align)
    starts = set(range(0, length - tile, stride))
    starts.add((length - tile) // align * align)
    ordered = sorted(starts)
    return [(s, s + tile) for s in ordered[:-1]] + [(ordered[-1], length)]


def _cores(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each tile's own part of the axis: cut in the middle of every overlap."""
    cuts = [(nxt[0] + cur[1]) // 2 for cur, nxt in zip(spans, spans[1:], strict=False)]
    bounds = [spans[0][0], *cuts, spans[-1][1]]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def tile_grid(shape, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
              align: int = 1) -> list[Tile]:  # fmt: skip
    """The overlapping tiles of an image of `shape`; their cores partition the image."""
    if int(overlap) < 0 or int(tile) <= int(overlap):
        raise ValueError(
            f"tile ({tile} px) must be larger than overlap ({overlap} px), and overlap >= 0."
        )
    rows, cols = (int(v) for v in tuple(shape)[:2])
    row_spans = _axis_spans(rows, int(tile), int(overlap), int(align))
    col_spans = _axis_spans(cols, int(tile), int(overlap), int(align))
    return [
        Tile(r, c, rc, cc)
        for r, rc in zip(row_spans, _cores(row_spans), strict=True)
        for c, cc in zip(col_spans, _cores(col_spans), strict=True)
    ]


def _work_side(side: int, factor: int) -> int:
    """`max_work_side` that makes `detect_cells` reduce a `side`-pixel tile by `factor`."""
    return max(32, math.ceil(side / factor))


@dataclass(frozen=True)
class _Candidate:
    cell: Cell
    tile: int
    in_core: bool
    depth: float  # distance of the centre from the tile's cut edges


def _tile_candidates(pixels, tile: Tile, index: int, shape, factor, min_score):
    """Detections of one tile in image coordinates, without those cut by its edges."""
    from .cells import detect_cells

    (top, bottom), (left, right) = tile.rows, tile.cols
    side = max(bottom - top, right - left)
    found = detect_cells(pixels, min_score=min_score, max_work_side=_work_side(side, factor))
    cut = (top > 0, left > 0, bottom < shape[0], right < shape[1])
    out = []
    for cell in found:
        r0, c0, r1, c1 = cell.bbox
        edges = (r0 < factor, c0 < factor, bottom - top - r1 < factor, right - left - c1 < factor)
        if any(e and c for e, c in zip(edges, cut, strict=True)):
            continue
        moved = replace(cell, bbox=(r0 + top, c0 + left, r1 + top, c1 + left))
        cr, cc = moved.centroid
        gaps = (cr - top, cc - left, bottom - cr, right - cc)
        depth = min([g for g, c in zip(gaps, cut, strict=True) if c], default=math.inf)
        in_core = (tile.core_rows[0] <= cr < tile.core_rows[1]
                   and tile.core_cols[0] <= cc < tile.core_cols[1])  # fmt: skip
        out.append(_Candidate(moved, index, in_core, depth))
    return out


def _shared_share(a: Cell, b: Cell) -> float:
    """Share of the smaller mask that lies on the other mask (0 when apart)."""
    top, left = max(a.bbox[0], b.bbox[0]), max(a.bbox[1], b.bbox[1])
    bottom, right = min(a.bbox[2], b.bbox[2]), min(a.bbox[3], b.bbox[3])
    if bottom <= top or right <= left:
        return 0.0
    ma = a.mask[top - a.bbox[0] : bottom - a.bbox[0], left - a.bbox[1] : right - a.bbox[1]]
    mb = b.mask[top - b.bbox[0] : bottom - b.bbox[0], left - b.bbox[1] : right - b.bbox[1]]
    smaller = max(1, min(a.area, b.area))
    return float(np.count_nonzero(ma & mb)) / smaller


def _deduplicate(candidates: list[_Candidate]) -> list[Cell]:
    """One detection per cell: preferred first, a later one dropped when it is mostly
    a cell already kept from another tile."""
    order = sorted(candidates, key=lambda c: (not c.in_core, -c.depth))
    kept: list[_Candidate] = []
    boxes = np.zeros((len(order), 4), np.int64)
    for cand in order:
        r0, c0, r1, c1 = cand.cell.bbox
        n = len(kept)
        near = np.flatnonzero(
            (boxes[:n, 0] < r1) & (boxes[:n, 2] > r0) & (boxes[:n, 1] < c1) & (boxes[:n, 3] > c0)
        )
        if any(
            kept[i].tile != cand.tile and _shared_share(kept[i].cell, cand.cell) >= SAME_CELL
            for i in near
        ):
            continue
        boxes[n] = cand.cell.bbox
        kept.append(cand)
    cells = [k.cell for k in kept]
    cells.sort(key=lambda c: (-c.score, c.bbox))
    return cells


def detect_cells_tiled(
    image,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    work_factor: int = DEFAULT_WORK_FACTOR,
    min_score: float = 0.3,
) -> list[Cell]:
    """`detect_cells` over a large image, one overlapping tile at a time.

    Parameters
    ----------
    image : numpy or dask array (rows, cols[, 3|4]), or a path (see `open_lazy`).
    tile, overlap : int, image pixels
        Tile side and overlap between neighbours; a cell wider than `overlap` may be
        lost. Memory grows with ``tile**2`` (about 40 bytes a pixel while detecting).
    work_factor : int >= 1
        Detection runs on ``work_factor`` x ``work_factor`` block means of each tile.
    min_score : as for `detect_cells`.

    Returns
    -------
    list of `Cell` in image coordinates (masks cover each cell's bbox only), sorted by
    score (descending). Each cell appears once; see the module notes.
    """
    if int(work_factor) < 1:
        raise ValueError(f"work_factor must be a whole number >= 1, got {work_factor}.")
    image = open_lazy(image)
    shape = tuple(int(v) for v in image.shape[:2])
    factor = int(work_factor)
    candidates = []
    for index, t in enumerate(tile_grid(shape, tile, overlap, align=factor)):
        pixels = read_window(image, t.rows, t.cols)
        candidates += _tile_candidates(pixels, t, index, shape, factor, min_score)
        del pixels
    return _deduplicate(candidates)
