"""Find white blood cells (WBCs) and leukaemic blasts in a blood-smear field.

`detect_cells` returns one `Cell` per white cell: its bounding box, its pixel mask (nucleus
plus cytoplasm) and a confidence score, most confident first. It works on whole fields
of any size and magnification without per-dataset settings, because every decision is
made relative to what the image itself shows:

1. **Colour, relative to the slide.** The background colour is the median of the
   brightest tenth of the pixels. Each pixel gets two log-ratio features measured against
   it: ``f = log(B/G)`` (blue over green: the violet nuclear stain absorbs green) and
   ``g = log(B/R)`` (blue over red: eosin-pink red cells absorb blue, not red). Log ratios
   do not change with illumination strength. Grayscale input uses optical density instead.
2. **Three reference colours.** Non-background pixels are those above the lower 3-class
   Otsu threshold of optical density. Among them, nuclear seeds lie above the
   minimum-error (Kittler-Illingworth) threshold of the green deficit
   ``2f - g = log(R/G) + log(B/G)`` (violet and magenta nuclei absorb green most; this
   threshold copes with nuclei being a few per cent of the stained pixels). The nuclear
   colour is the seeds' median, the "red cell" colour the median of the other
   non-background pixels, and the background is the origin. A field whose "nuclei" are
   not bluer than the slide (against green and against red) has no white cells. Every
   pixel is then scored by how far it has moved from the red-cell colour *and* from the
   background colour towards the nuclear colour, ``q = min(q_rbc, q_bg)`` (0 = red cell
   or background, 1 = typical nucleus). This lets the same code handle pink red cells
   (BCCD) and bluish-lilac ones (many ALL fields).
3. **Nuclei and cells.** Nuclei are ``q > 0.5``; cell material is ``q > 0.15`` (the pale
   lilac or blue cytoplasm) plus the nuclei, with enclosed holes of cytoplasm colour
   filled. Only material holding a nucleus is kept.
4. **One detection per cell.** Touching cells are split at necks of the material's
   distance transform. Fragments are merged back when there is no real neck, or when the
   pair does not look like two blasts: both nuclei must fill their regions and together
   cover most of the area (a neutrophil's lobes lie in one abundant cytoplasm, a
   blast's nucleus fills almost all of its cell).
5. **Score.** Stain contrast x size plausibility (area relative to the red-cell area,
   estimated from the image) x solidity x nuclear share, each in [0, 1].

The work is done on a copy reduced to at most `max_work_side` pixels per side; boxes and
masks are mapped back to full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage import segmentation
from skimage.filters import threshold_multiotsu, threshold_otsu

from ._morphology import convex_area, dilate_cross, open_cross, peaks_in_mask, perimeter
from .images import as_rgb, check_2d

BBox = tuple[int, int, int, int]

#: Offset added to channel values before taking logs, so dark pixels do not explode.
_LOG_OFFSET = 0.02
#: q above which a pixel counts as nucleus (halfway from red-cell colour to nuclear colour).
_Q_NUCLEUS = 0.5
#: q above which a pixel counts as cell material (cytoplasm).
_Q_CYTOPLASM = 0.15
#: Smallest colour distance (log-ratio units) between nuclei and red cells for any detection.
_MIN_CONTRAST = 0.15
#: Candidates smaller than this share of a red cell's area are dropped (platelets, debris).
_MIN_RELATIVE_AREA = 0.3
#: Two touching blasts are split where the neck (distance-transform saddle) is below this
#: share of the smaller one's inscribed radius ...
_NECK_SPLIT = 0.85
#: ... any other pair of regions only where the neck is below this share.
_NECK_SPLIT_LOBED = 0.5
#: A pair looks like two blasts when each region's nucleus fills it (nuclear inscribed
#: radius >= this share of the region's) ...
_WHOLE_NUCLEUS = 0.7
#: ... and their nuclei cover at least this share of their joint area (a granulocyte's
#: lobes sit in abundant cytoplasm, whereas a blast is mostly nucleus).
_GRANULOCYTE_SHARE = 0.6
_CROSS = ndi.generate_binary_structure(2, 1)
#: Red-cell radius from distance-transform peaks: needs this many peaks ...
_MIN_RED_PEAKS = 10
#: ... and their upper-quartile inscribed radius times this (a peak sits at most a pixel
#: or so from a cell's true centre, so inscribed radii run a little short).
_PEAK_RADIUS_SCALE = 1.15
#: Images narrower than this many working pixels (after reduction) cannot hold a cell.
_MIN_WORK_SIDE = 4


@dataclass(frozen=True)
class Cell:
    """One detected white cell.

    Attributes
    ----------
    bbox : (min_row, min_col, max_row, max_col)
        Box around the whole cell (nucleus + cytoplasm) in image pixels, scikit-image
        ``regionprops`` convention (max exclusive).
    mask : bool array of shape (max_row - min_row, max_col - min_col)
        The cell's pixels inside `bbox` (like ``regionprops(...).image``).
    score : float
        Confidence in [0, 1]: stain contrast x size plausibility x shape.
    """

    bbox: BBox
    mask: np.ndarray = field(repr=False, compare=False)
    score: float

    @property
    def area(self) -> int:
        """Number of cell pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def centroid(self) -> tuple[float, float]:
        """(row, col) of the mask's centre of mass, in image coordinates."""
        rows, cols = np.nonzero(self.mask)
        if rows.size == 0:
            return (
                (self.bbox[0] + self.bbox[2] - 1) / 2.0,
                (self.bbox[1] + self.bbox[3] - 1) / 2.0,
            )
        return float(rows.mean()) + self.bbox[0], float(cols.mean()) + self.bbox[1]


def detect_cells(
    image: np.ndarray, *, min_score: float = 0.3, max_work_side: int = 320
) -> list[Cell]:
    """Find white blood cells / blasts in a smear field; most confident first.

    Parameters
    ----------
    image : (rows, cols[, 3|4]) array, any integer or float dtype
        A 2-D gray, RGB or RGBA field (RGBA is composited over white). Stacks raise
        `ImageError`. Grayscale works from intensity alone and is less reliable.
    min_score : float in [0, 1]
        Drop detections scoring below this. 0 returns every candidate at least 0.3 red-cell
        areas large.
    max_work_side : int, pixels
        The image is block-averaged by an integer factor until its longer side is at most
        this long; detection runs there and results are mapped back to full resolution.
        Larger is slower and rarely better (cells are many pixels wide at 320).

    Returns
    -------
    list of `Cell`, sorted by score (descending). Empty for a blank or cell-free field.
    """
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be within [0, 1], got {min_score}.")
    if int(max_work_side) < 32:
        raise ValueError(f"max_work_side must be at least 32 pixels, got {max_work_side}.")
    check_2d(image)
    rgb_full = as_rgb(image).astype(np.float32)
    labels, found, factor = _detect_small(rgb_full, int(max_work_side))
    if not found:
        return []
    return _to_full_resolution(labels.shape, found, factor, rgb_full.shape[:2], min_score)


def cells_to_labels(cells: list[Cell], shape: tuple[int, ...]) -> np.ndarray:
    """Paint cells into an int32 label image: cell ``i`` gets value ``i + 1``.

    Parameters
    ----------
    cells : list of `Cell` (as returned by `detect_cells`).
    shape : (rows, cols[, ...]) of the image; only the first two entries are used.

    Where masks overlap, the earlier (higher-scored) cell keeps the pixel. Parts of a
    mask outside the image are clipped.
    """
    rows, cols = (int(v) for v in tuple(shape)[:2])
    labels = np.zeros((rows, cols), np.int32)
    for i, cell in enumerate(cells):
        r0, c0, r1, c1 = (int(v) for v in cell.bbox)
        mask = np.asarray(cell.mask, bool)
        if mask.shape != (r1 - r0, c1 - c0):
            raise ValueError(
                f"Cell {i}: mask shape {mask.shape} does not match its bbox {cell.bbox}."
            )
        top, left = max(r0, 0), max(c0, 0)
        bottom, right = min(r1, rows), min(c1, cols)
        if bottom <= top or right <= left:
            continue
        region = labels[top:bottom, left:right]
        sub = mask[top - r0 : bottom - r0, left - c0 : right - c0]
        region[sub & (region == 0)] = i + 1
    return labels


# --------------------------------------------------------------------------- internals


def _detect_small(rgb: np.ndarray, max_work_side: int):
    """Run detection on a reduced copy; return (label image, found, factor).

    `found` maps each scored label to (score, its box, its hole-filled mask in the box).
    Labels and pixel sizes are those of the reduced image (`factor` times smaller).
    """
    factor = max(1, int(np.ceil(max(rgb.shape[:2]) / max_work_side)))
    if min(rgb.shape[:2]) < _MIN_WORK_SIDE * factor:  # a strip: no room for a cell
        return np.zeros((rgb.shape[0] // factor, rgb.shape[1] // factor), np.int32), {}, factor
    small = _block_mean(rgb, factor)
    colour, density = _colour_features(small)
    colour = ndi.gaussian_filter(colour, (1.0, 1.0, 0.0))
    density = ndi.gaussian_filter(density, 1.0)
    empty = np.zeros(small.shape[:2], np.int32), {}, factor
    # green deficit log(R/G) + log(B/G): violet-magenta nuclei absorb green most
    stain = 2.0 * colour[..., 0] - colour[..., 1] if colour.shape[-1] == 2 else colour[..., 0]
    if float(np.ptp(density)) < 0.03:
        return empty  # blank or constant field

    try:
        t_fg = float(threshold_multiotsu(density, 3)[0])  # background | red cells | nuclei
    except ValueError:  # fewer than three distinct values
        return empty
    foreground = density > max(t_fg, 0.03)
    if foreground.sum() < 20 or float(np.ptp(stain[foreground])) <= 0:
        return empty
    t_seed = _seed_threshold(stain[foreground])  # red cells | nuclei
    seed = foreground & (stain > t_seed)
    if seed.sum() < 4:
        return empty
    rest = foreground & ~dilate_cross(seed, iterations=2)
    c_nuc = np.median(colour[seed], axis=0)
    c_rbc = np.median(colour[rest], axis=0) if rest.sum() > 20 else np.zeros_like(c_nuc)
    if min(np.linalg.norm(c_nuc - c_rbc), np.linalg.norm(c_nuc)) < _MIN_CONTRAST:
        return empty  # nothing stained clearly differently from red cells / background
    if np.any(c_nuc <= 0) or c_nuc[0] <= c_rbc[0]:
        return empty  # "nuclei" not bluer than the slide or than red cells: no nuclear stain

    q = np.minimum(_towards(colour, c_rbc, c_nuc), _towards(colour, np.zeros_like(c_nuc), c_nuc))
    nuclei = _remove_small(_fill_holes(open_cross(q > _Q_NUCLEUS)), 4)
    if not nuclei.any():
        return empty
    material = _fill_holes_where(open_cross(q > _Q_CYTOPLASM) | nuclei, q, 0.5 * _Q_CYTOPLASM)
    red_area = np.pi * _red_cell_radius(foreground & ~material, small.shape[:2]) ** 2
    # keep blobs that hold a nucleus and are not far smaller than any white cell
    # (platelets, debris, red-cell fringes)
    comp, _ = ndi.label(material, _CROSS)
    keep = np.bincount(comp.ravel()) >= _MIN_RELATIVE_AREA * red_area
    keep[0] = False
    has_nucleus = np.zeros_like(keep)
    has_nucleus[comp[nuclei]] = True
    kept = keep & has_nucleus
    blobs = (np.cumsum(kept, dtype=np.int32) * kept)[comp]  # = ndi.label(kept[comp], _CROSS)

    cells = _split_cells(blobs, nuclei & (blobs > 0))
    too_small = np.bincount(cells.ravel()) < _MIN_RELATIVE_AREA * red_area
    too_small[0] = True
    cells[too_small[cells]] = 0
    return cells, _score_cells(cells, nuclei, colour, c_rbc, red_area), factor


def _score_cells(cells, nuclei, colour, c_rbc, red_area) -> dict:
    """{label: (`_score`, box, hole-filled mask)} for each cell holding nuclear pixels."""
    found = {}
    for label, box in enumerate(ndi.find_objects(cells), start=1):
        if box is None:
            continue
        region = cells[box] == label
        cell = _fill_holes(region)
        nucleus = nuclei[box] & cell
        if not nucleus.any():
            continue
        nuc_colour = np.median(colour[box][nucleus], axis=0)
        contrast = min(np.linalg.norm(nuc_colour - c_rbc), np.linalg.norm(nuc_colour))
        area = float(np.count_nonzero(region))
        score = _score(
            contrast=float(contrast),
            relative_area=float(cell.sum()) / red_area,
            solidity=area / float(convex_area(region)),
            nuclear_share=float(nucleus.sum()) / float(cell.sum()),
        )
        found[label] = score, box, cell
    return found


def _seed_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Minimum-error threshold (Kittler & Illingworth 1986) between red cells and nuclei.

    Fits two Gaussians to the histogram and picks the cut with the least classification
    error. Unlike Otsu's method it does not assume classes of similar size or spread, so
    it still finds the nuclei when they are 2 % of the stained pixels among many red
    cells. Both classes must keep at least 0.5 % of the values.
    """
    counts, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    p = counts / counts.sum()
    w1 = np.cumsum(p)
    w2 = 1.0 - w1
    m1 = np.cumsum(p * centres)
    s1 = np.cumsum(p * centres**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        var1 = s1 / w1 - (m1 / w1) ** 2
        var2 = (s1[-1] - s1) / w2 - ((m1[-1] - m1) / w2) ** 2
        error = w1 * np.log(var1) + w2 * np.log(var2) - 2.0 * (w1 * np.log(w1) + w2 * np.log(w2))
    valid = (w1 > 0.005) & (w2 > 0.005) & (var1 > 0) & (var2 > 0)
    if not valid.any():
        return float(threshold_otsu(values))
    error[~valid] = np.inf
    return float(centres[int(np.argmin(error))])


def _score(contrast, relative_area, solidity, nuclear_share) -> float:
    """Combine four plausibility terms, each in [0, 1], into one confidence.

    contrast : colour distance of the nucleus from red cells/background (log-ratio units);
        0.25 gives 0.63, 0.5 gives 0.86.
    relative_area : cell area / red-cell area. WBCs and blasts cover about 1-6 red-cell
        areas, platelets and debris well below 0.3, so the term ramps from 0.3 to 1 and
        fades from 30 to 60 (a merged clump, or a wrong red-cell estimate).
    solidity : area / convex-hull area; cells are convex (> 0.85), debris is ragged.
    nuclear_share : nucleus / cell area; at least 0.2 for any WBC.
    """
    s_stain = 1.0 - np.exp(-contrast / 0.25)
    s_size = _clip01((relative_area - _MIN_RELATIVE_AREA) / 0.7)
    s_size *= _clip01((60.0 - relative_area) / 30.0)
    s_shape = _clip01((solidity - 0.5) / 0.35)
    s_nuc = _clip01(nuclear_share / 0.2)
    return float(_clip01(s_stain * s_size * s_shape * s_nuc))


def _clip01(value):
    """`value` clipped to [0, 1] (``np.clip`` is slow on scalars)."""
    return min(max(value, 0.0), 1.0)


def _block_mean(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor` x `factor` blocks (the ragged last row/column is dropped)."""
    if factor == 1:
        return rgb
    rows, cols = rgb.shape[0] // factor, rgb.shape[1] // factor
    total = np.zeros((rows, cols, rgb.shape[2]), np.float32)
    for dr in range(factor):
        for dc in range(factor):
            total += rgb[dr : rows * factor : factor, dc : cols * factor : factor]
    return total / np.float32(factor * factor)


def _colour_features(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (colour features (rows, cols, k), optical density over the background).

    Colour features are ``log(B/G)`` and ``log(B/R)`` relative to the background, so the
    background sits at the origin. For gray images the single feature is the density.
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = (red + green + blue) / 3.0
    background = np.median(rgb[lum >= np.percentile(lum[::2, ::2], 90)], axis=0)
    logs = np.log(rgb + _LOG_OFFSET) - np.log(background + _LOG_OFFSET)
    dark = np.maximum(-logs, 0.0)
    density = (dark[..., 0] + dark[..., 1] + dark[..., 2]) / 3.0  # = dark.sum(-1), faster
    spread = max(float(np.abs(red - green).max()), float(np.abs(blue - green).max()))
    if spread < 2.0 / 255.0:  # gray: no colour to use
        return density[..., None], density
    colour = np.stack([logs[..., 2] - logs[..., 1], logs[..., 2] - logs[..., 0]], axis=-1)
    return colour, density


def _towards(colour: np.ndarray, origin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Position of each pixel's colour along origin → target (0 at origin, 1 at target)."""
    axis = np.asarray(target - origin, dtype=np.float64)
    offset = colour - origin
    # the dot product with `axis`, spelled out: 3x faster than `offset @ axis`, same bits
    along = offset[..., 0] * axis[0]
    for k in range(1, len(axis)):
        along += offset[..., k] * axis[k]
    return along / max(float(axis @ axis), 1e-6)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes (faster than ``ndi.binary_fill_holes`` for large masks)."""
    lab, n = ndi.label(~mask, _CROSS)
    if n == 0:
        return mask.copy()
    hole = np.ones(n + 1, bool)
    for edge in (lab[0], lab[-1], lab[:, 0], lab[:, -1]):
        hole[edge] = False
    hole[0] = False
    return mask | hole[lab]


def _fill_holes_where(mask: np.ndarray, q: np.ndarray, q_min: float) -> np.ndarray:
    """Fill only holes whose mean q is at least `q_min` (pale cytoplasm, not red cells)."""
    holes = _fill_holes(mask) & ~mask
    lab, n = ndi.label(holes, _CROSS)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sums = np.bincount(lab.ravel(), weights=q.ravel(), minlength=n + 1)
    keep = sums >= q_min * np.maximum(sizes, 1)
    keep[0] = False
    return mask | keep[lab]


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop connected components with fewer than `min_size` pixels."""
    lab, n = ndi.label(mask, _CROSS)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]


def _red_cell_radius(red: np.ndarray, shape: tuple[int, int]) -> float:
    """Typical red-cell radius in working pixels.

    ``2 * area / perimeter`` of their mask is exactly a disc's radius; in dense fields
    where red cells pile into one mass it grows with the pile (1.6x on some all4 fields,
    which made small lymphocytes look too small to be cells), so it is capped by the
    upper-quartile inscribed radius at the distance transform's peaks. Falls back to 4 %
    of the longer image side when there are hardly any red cells.
    """
    fallback = 0.04 * max(shape)
    red = _fill_holes(open_cross(red))
    area = float(red.sum())
    if area < 50:
        return fallback
    outline = float(perimeter(red))
    radius = 2.0 * area / outline if outline > 0 else fallback
    # where red cells pile up into one mass (dense fields), its outline hides their
    # borders and 2A/P grows with the pile; the inscribed radii at the distance
    # transform's peaks still measure single cells
    distance = ndi.distance_transform_edt(red)
    peaks = peaks_in_mask(distance, red, 3, distance.min())
    if len(peaks) >= _MIN_RED_PEAKS:
        inscribed = distance[tuple(peaks.T)]
        radius = min(radius, _PEAK_RADIUS_SCALE * float(np.percentile(inscribed, 75)))
    return radius


def _split_cells(blobs: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """Label cells: split material at necks, then merge fragments of one cell back.

    Watershed on the distance transform from all its local maxima over-segments; regions
    are then merged across their shared border (the "saddle", highest border distance)
    from the highest saddle down, as in a dynamics-based watershed. A pair stays apart
    if the saddle is below `_NECK_SPLIT_LOBED` of the smaller region's peak, or below
    `_NECK_SPLIT` when the pair looks like two blasts (`_WHOLE_NUCLEUS`,
    `_GRANULOCYTE_SHARE`). Why: the lobes of a neutrophil are separate nuclear pieces in
    one cytoplasm and must give one detection; touching blasts must give two.
    `blobs` is the material labelled by 4-connected component (``ndi.label``).
    """
    labels = np.zeros(blobs.shape, np.int32)
    offset = 0
    for index, box in enumerate(ndi.find_objects(blobs), start=1):
        # each blob inside its bounding box plus a 1-pixel margin (distances stay exact)
        window = tuple(
            slice(max(side.start - 1, 0), min(side.stop + 1, size))
            for side, size in zip(box, blobs.shape, strict=True)
        )
        blob = blobs[window] == index
        parts = _split_window(blob, nuclei[window] & blob)
        labels[window][parts > 0] = parts[parts > 0] + offset
        offset += int(parts.max())
    return labels


def _split_window(material: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """`_split_cells` on a window that holds one 4-connected blob of material."""
    dist = ndi.distance_transform_edt(material)
    peaks = peaks_in_mask(dist, material, 2, 1.0)
    if len(peaks) <= 1:  # a single marker (a peak, or any pixel) floods the whole blob
        return material.astype(np.int32)
    markers = np.zeros(material.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = segmentation.watershed(-dist, markers, mask=material)
    n = int(regions.max())
    if n <= 1:
        return regions

    inside = regions > 0
    peak = np.zeros(n + 1)
    np.maximum.at(peak, regions[inside], dist[inside])
    nuc_dist = ndi.distance_transform_edt(nuclei)
    nuc_peak = np.zeros(n + 1)
    np.maximum.at(nuc_peak, regions[inside], nuc_dist[inside])
    area = np.bincount(regions.ravel(), minlength=n + 1).astype(float)
    nuc_area = np.bincount(regions[nuclei], minlength=n + 1).astype(float)

    saddle: dict[tuple[int, int], float] = {}
    for a, b, da, db in (
        (regions[:, 1:], regions[:, :-1], dist[:, 1:], dist[:, :-1]),
        (regions[1:, :], regions[:-1, :], dist[1:, :], dist[:-1, :]),
    ):
        border = (a != b) & (a > 0) & (b > 0)
        if not border.any():
            continue
        lo_lab = np.minimum(a[border], b[border]).astype(np.int64)
        hi_lab = np.maximum(a[border], b[border]).astype(np.int64)
        values = np.minimum(da[border], db[border])
        keys = lo_lab * (n + 1) + hi_lab
        order = np.lexsort((values, keys))
        keys, values = keys[order], values[order]
        last = np.r_[keys[1:] != keys[:-1], True]
        for key, value in zip(keys[last].tolist(), values[last].tolist(), strict=True):
            pair = (key // (n + 1), key % (n + 1))
            saddle[pair] = max(saddle.get(pair, 0.0), value)

    parent = np.arange(n + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), height in sorted(saddle.items(), key=lambda item: -item[1]):
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        smaller = min(peak[ra], peak[rb])
        two_blasts = (
            nuc_peak[ra] >= _WHOLE_NUCLEUS * peak[ra]
            and nuc_peak[rb] >= _WHOLE_NUCLEUS * peak[rb]
            and nuc_area[ra] + nuc_area[rb] >= _GRANULOCYTE_SHARE * (area[ra] + area[rb])
        )
        if height >= _NECK_SPLIT * smaller or (
            height >= _NECK_SPLIT_LOBED * smaller and not two_blasts
        ):
            keep, drop = (ra, rb) if peak[ra] >= peak[rb] else (rb, ra)
            parent[drop] = keep
            peak[keep] = max(peak[ra], peak[rb])
            nuc_peak[keep] = max(nuc_peak[ra], nuc_peak[rb])
            area[keep] = area[ra] + area[rb]
            nuc_area[keep] = nuc_area[ra] + nuc_area[rb]
    lut = np.array([root(i) for i in range(n + 1)], np.int32)
    return lut[regions]


def _to_full_resolution(work_shape, found, factor, shape, min_score) -> list[Cell]:
    """Turn working-resolution cells (`_detect_small`'s `found`) into full-resolution
    `Cell`s above `min_score`."""
    cells = []
    for score, sl, small in found.values():
        if score < min_score:
            continue
        top, left = sl[0].start * factor, sl[1].start * factor
        bottom, right = sl[0].stop * factor, sl[1].stop * factor
        # the last partial block was dropped when reducing; let edge cells reach the edge
        if sl[0].stop == work_shape[0]:
            bottom = shape[0]
        if sl[1].stop == work_shape[1]:
            right = shape[1]
        mask = np.repeat(np.repeat(small, factor, axis=0), factor, axis=1) if factor > 1 else small
        pad = ((0, bottom - top - mask.shape[0]), (0, right - left - mask.shape[1]))
        if pad != ((0, 0), (0, 0)):
            mask = np.pad(mask, pad, mode="edge")
        cells.append(Cell(bbox=(top, left, bottom, right), mask=mask, score=score))
    cells.sort(key=lambda c: -c.score)
    return cells
