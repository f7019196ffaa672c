"""Morphology label classes, an automatic first draft of them, and label files.

* :data:`MORPHOLOGY_CLASSES` / :data:`MORPHOLOGY_COLORS`: the codes of document 003's
  segmentation ground truth (1 nucleus, 2 cytoplasm, 3 vacuole, 4 red blood cell,
  5 background) and their colours. Value 0 means "not labelled".
* :func:`suggest_labels`: a draft label image from stain colour and shape, for the
  annotator to correct with the brush.
* :func:`save_labels` / :func:`load_labels` (PNG or TIFF, names stored inside the file)
  and :func:`write_labels_zarr` / :func:`read_labels_zarr` (names in the array's
  attributes) keep label values and names together and never overwrite silently.

Pure numpy / scipy / scikit-image; no Qt, no napari.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology, segmentation
from skimage.feature import peak_local_max

from . import safe_files
from .images import as_label_image, as_rgb, check_2d

#: Label value → class name, as in document 003's segmentation ground truth.
MORPHOLOGY_CLASSES: dict[int, str] = {
    1: "nucleus",
    2: "cytoplasm",
    3: "vacuole",
    4: "red blood cell",
    5: "background",
}

#: Label value → RGBA colour (0–1) used for the morphology Labels layer.
MORPHOLOGY_COLORS: dict[int, tuple[float, float, float, float]] = {
    1: (0.45, 0.10, 0.60, 1.0),  # nucleus: deep purple
    2: (0.35, 0.65, 0.95, 1.0),  # cytoplasm: sky blue
    3: (1.00, 1.00, 1.00, 1.0),  # vacuole: white
    4: (0.90, 0.25, 0.25, 1.0),  # red blood cell: red
    5: (0.85, 0.80, 0.55, 1.0),  # background: straw
}

__all__ = [
    "MORPHOLOGY_CLASSES",
    "MORPHOLOGY_COLORS",
    "LabelsError",
    "label_names",
    "load_labels",
    "read_labels_zarr",
    "save_labels",
    "suggest_labels",
    "write_labels_zarr",
]

_NUCLEUS, _CYTOPLASM, _VACUOLE, _RBC, _BACKGROUND = 1, 2, 3, 4, 5

#: Key of the label names in a PNG text chunk, a TIFF description and Zarr attributes.
NAMES_KEY = "napari_leukemia:label_names"
#: Zarr attribute set by :func:`write_labels_zarr`: every chunk was stored, even all-0 ones,
#: so a chunk missing later is damage, not "all fill value" (issue 14 #16).
ALL_CHUNKS_KEY = "napari_leukemia:all_chunks_stored"


class LabelsError(ValueError):
    """A label image or label file the core cannot use; the message says what to do."""


# --------------------------------------------------------------------------- names


def label_names(
    labels: np.ndarray | None = None, names: Mapping[int, str] | None = None
) -> dict[int, str]:
    """Map label values to class names.

    Parameters
    ----------
    labels : integer array or None
        A label image. When given, the result holds exactly the non-zero values present
        in it (0 means "not labelled" and is left out), in increasing order.
        When ``None``, the result is `names` (or the morphology classes) as given.
    names : mapping of int to str, optional
        Names to use; values it does not cover fall back to
        :data:`MORPHOLOGY_CLASSES`, then to ``"label N"``.

    Returns
    -------
    dict of int to str
    """
    table = dict(MORPHOLOGY_CLASSES)
    if names is not None:
        table.update(_checked_names(names))
    if labels is None:
        return dict(sorted(table.items()))
    values = np.unique(_check_labels(labels))
    return {int(v): table.get(int(v), f"label {int(v)}") for v in values if v != 0}


_NAMES_EXAMPLE = "{1: 'nucleus', 2: 'cytoplasm'}"


def _checked_names(names) -> dict[int, str]:
    """`names` as {label value: name}, or `LabelsError` naming the entry that is wrong."""
    if not isinstance(names, Mapping):
        raise LabelsError(
            f"label names must be a mapping of label value to name, e.g. {_NAMES_EXAMPLE}; "
            f"got a {type(names).__name__}."
        )
    return {_label_key(key): str(name) for key, name in names.items()}


def _label_key(key) -> int:
    """A label-name key (int, integral float or digit string such as JSON's "1") as int."""
    whole = (
        (isinstance(key, int | np.integer) and not isinstance(key, bool))
        or (isinstance(key, str) and key.strip().isdecimal())
        or (isinstance(key, float | np.floating) and float(key).is_integer())
    )
    if not whole or int(key) < 0:
        raise LabelsError(
            f"label names: the key {key!r} is not a label value. Keys are the whole numbers "
            f">= 0 painted in the label image, e.g. {_NAMES_EXAMPLE}."
        )
    return int(key)


def _check_labels(labels) -> np.ndarray:
    """`labels` as an integer array, or `LabelsError` saying why not (shared check)."""
    return as_label_image(labels, LabelsError)


# --------------------------------------------------------------------------- suggestion


def suggest_labels(
    image: np.ndarray,
    *,
    sigma: float = 1.0,
    background_order: int = 2,
    hysteresis: float = 0.6,
    min_contrast: float = 2.0,
    min_angle: float = 4.0,
    lobe_gap: float = 1.0,
    max_cytoplasm: float = 1.5,
) -> np.ndarray:
    """Draft morphology labels of a blood-smear image from stain colour and shape.

    A first draft for an annotator, not ground truth. Steps (all per image, no
    trained parameters):

    1. **Optical density.** The lit slide is estimated from the brightest pixels and,
       to absorb uneven illumination, a low-order polynomial is fitted to the
       unstained pixels; ``OD = -ln(I / I_slide)`` per RGB channel (Beer-Lambert), so
       colours are measured relative to the slide and not to one stain's look (a
       camera white balance or a uniform stain tint cancels out).
    2. **Stained pixels**: dense pixels (summed OD above the lower of two multi-Otsu
       thresholds) grown by hysteresis through attached fainter pixels down to the
       lower of `hysteresis` times that threshold and a *faint* threshold: Otsu's
       threshold of the log density, which sits just above the slide's own level
       whatever the stain's strength, so pale cytoplasm next to a very dark nucleus
       is kept. The unstained pixels for the illumination fit lie below it too.
    3. **Nuclei**: the nuclear dyes (azure / methylene blue / haematoxylin) absorb green
       but transmit blue, while red cells and most cytoplasm absorb both, so the
       nuclear score is ``OD_green - OD_blue``. Seeds come from Otsu's threshold of the
       score over stained pixels, kept only when the seed class is at least
       `min_contrast` times stronger than the rest and, unless it is twice that
       strong, differs in hue from the other dense pixels by at least `min_angle`
       degrees (two overlapping red cells are about twice as dense as one and not
       differently coloured); otherwise the field has no nuclei and every stained
       object is a red cell. Seeds closer than `lobe_gap`
       nucleus radii are one cell (lobed nuclei). Inside each cell the nucleus is
       re-thresholded with Li's minimum cross-entropy rule and holes are filled.
    4. **Cells vs red cells** (shape): stained pixels are split by a watershed of the
       distance transform, seeded by the nuclei, by red-cell centres (distance-map
       peaks whose inscribed disc misses every nucleus, and stained pixels beyond
       reach), and, where the stain separates them (≥ 15° apart in OD colour), by
       red-cell-coloured regions. Cytoplasm reaches at most `max_cytoplasm` times the
       cell's equivalent nucleus radius beyond the nucleus, and at most twice the
       thickness its edge against bare slide shows (red cells pressed against a cell
       have no such edge).
    5. **Vacuoles**: small unstained holes enclosed by a cell. Other stained pixels are
       red cells; the rest is background.
    6. **Checked against the cell detector** (`napari_leukemia.detect_cells`, which
       judges colour against the field's own red cells): a drafted cell that does not
       touch a detected cell becomes red cell / background, and a detected cell with no
       drafted nucleus gets one (see `_keep_to_detected_cells`).

    Parameters
    ----------
    image : (rows, cols[, 3|4]) array, any integer or float dtype
        A 2-D RGB (or RGBA, composited over white) bright-field image. Grayscale is
        accepted but nuclei are then found from density alone.
    sigma : float, pixels, in [0, 25]
        Gaussian smoothing of the optical density before thresholding.
    background_order : int in {0, 1, 2}
        Degree of the polynomial fitted to the slide illumination (0 = constant).
    hysteresis : float in (0, 1]
        Fainter pixels down to this fraction of the dense threshold (or the faint
        threshold, when lower) join stained regions they touch.
    min_contrast : float in [1, 100]
        Minimum ratio of mean nuclear score, seeds vs other stained pixels, to accept
        that the field contains nuclei.
    min_angle : float, degrees, in [0, 90]
        Minimum angle between the median OD colour directions of seeds and of other
        stained pixels (ignored for grayscale images).
    lobe_gap : float in [0, 10]
        Nucleus pieces within this many (largest) nucleus radii form one cell.
    max_cytoplasm : float in (0, 10]
        Cytoplasm reach beyond the nucleus, in equivalent nucleus radii of the cell
        (a bound on the nucleus : cytoplasm ratio; 1.5 covers neutrophils and
        monocytes).

    Returns
    -------
    numpy.ndarray of uint8, shape (rows, cols)
        Codes of :data:`MORPHOLOGY_CLASSES`: 1 nucleus, 2 cytoplasm, 3 vacuole,
        4 red blood cell, 5 background. Every pixel gets a code (no 0).

    Raises
    ------
    ImageError
        If `image` is not one 2-D grey or RGB(A) plane.
    ValueError
        If a parameter is not a number within its range (the message names it).

    Notes
    -----
    Known limits: where red cells press against a leukocyte with the same colour and
    density as its cytoplasm (dense lilac fields), the split follows shape only and may
    give the cell part of a red cell; very pale cytoplasm may be missed; platelets and
    stain debris may be drawn as small nuclei. Correct these with the brush.
    """
    check_2d(image)
    _check_range("sigma", sigma, 0.0, _MAX_SIGMA)
    _check_range("min_contrast", min_contrast, 1.0, 100.0)
    _check_range("min_angle", min_angle, 0.0, 90.0)
    _check_range("lobe_gap", lobe_gap, 0.0, 10.0)
    _check_range("hysteresis", hysteresis, 0.0, 1.0, open_low=True)
    _check_range("max_cytoplasm", max_cytoplasm, 0.0, 10.0, open_low=True)
    if isinstance(background_order, bool) or background_order not in (0, 1, 2):
        raise ValueError(f"background_order must be 0, 1 or 2, got {background_order!r}.")

    rgb = as_rgb(image)
    out = np.full(rgb.shape[:2], _BACKGROUND, np.uint8)
    od = _optical_density(rgb, float(sigma), int(background_order))
    density = od.sum(axis=-1)
    if float(np.ptp(density)) < 0.05 or min(density.shape) < 4:
        return out  # blank or constant field

    found = _stained(density, float(hysteresis))
    if found is None:
        return out
    stained_raw, dense = found
    stained = ndi.binary_fill_holes(stained_raw)
    grey = float(np.ptp(rgb, axis=-1).max()) < 2.0 / 255.0
    score = density if grey else np.clip(od[..., 1] - od[..., 2], 0.0, None)

    angle = 0.0 if grey else float(min_angle)
    detected = _detected_cells(rgb)
    seeds = _nucleus_seeds(score, od, stained, dense, float(min_contrast), angle)
    out[stained] = _RBC
    if seeds is not None:
        nuclei, r_nuc = seeds
        cells = _cells(od, nuclei, stained, r_nuc, float(lobe_gap), float(max_cytoplasm))
        cell = cells > 0
        nucleus = _refine_nuclei(score, cells, r_nuc)
        out[cell] = _CYTOPLASM
        holes = cell & ~stained_raw & ~nucleus
        if holes.any():
            out[holes] = _vacuoles(holes, cells)
        out[nucleus] = _NUCLEUS
    _keep_to_detected_cells(out, detected, stained, score)
    return out


#: A drafted white cell stands when it comes this close (pixels) to a detected cell.
_DETECTOR_REACH = 3


def _detected_cells(rgb: np.ndarray) -> np.ndarray:
    """Label image of the white cells `detect_cells` finds (0 = none)."""
    from .cells import cells_to_labels, detect_cells

    return cells_to_labels(detect_cells(rgb), rgb.shape)


def _keep_to_detected_cells(out, detected, stained, score) -> None:
    """Let drafted white cells stand only where the cell detector found one (in place).

    The draft's cells grow from nuclei by shape and colour; the detector decides from
    colour relative to the field's own red cells whether a white cell is there. A
    drafted cell (connected nucleus, cytoplasm and vacuole pixels) that comes no
    closer than `_DETECTOR_REACH` px to any detected cell becomes red cell (stained
    pixels) or background: no nucleus on a lilac red cell or a pale strip. A detected
    cell with no drafted nucleus (a lone blast among bluish red cells) gets one from
    Li's threshold of the nuclear score inside its mask, the rest of the mask
    cytoplasm. When the detector finds nothing (e.g. a crop filled by one cell, with
    few red cells to compare with) the draft stays as it is.
    """
    if not detected.any():
        return
    near = ndi.binary_dilation(detected > 0, iterations=_DETECTOR_REACH)
    white = np.isin(out, (_NUCLEUS, _CYTOPLASM, _VACUOLE))
    drafted, _ = ndi.label(white)
    confirmed = np.unique(drafted[near & white])
    lone = white & ~np.isin(drafted, confirmed)
    out[lone] = np.where(stained[lone], _RBC, _BACKGROUND)
    for index, box in enumerate(ndi.find_objects(detected), start=1):
        if box is None:
            continue
        mask = detected[box] == index
        if (out[box][mask] == _NUCLEUS).any():
            continue
        values = score[box][mask]
        if float(np.ptp(values)) <= 0:
            continue
        nucleus = ndi.binary_fill_holes(mask & (score[box] > filters.threshold_li(values)))
        patch = out[box]
        patch[mask] = _CYTOPLASM
        patch[nucleus & mask] = _NUCLEUS


#: Largest accepted smoothing, pixels: far beyond a nucleus radius, it blurs cells away.
_MAX_SIGMA = 25.0


def _check_range(name, value, low, high, open_low=False) -> None:
    """Raise ValueError unless `value` is a real number in [low, high] (or (low, high])."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    inside = (value > low if open_low else value >= low) and value <= high
    if not (np.isfinite(value) and inside):
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be within {bracket}{low:g}, {high:g}], got {value!r}.")


def _optical_density(rgb: np.ndarray, sigma: float, order: int) -> np.ndarray:
    """Per-channel optical density relative to the (fitted) slide illumination, >= 0."""
    rgb = np.clip(rgb, 1.0 / 255.0, 1.0)
    lum = rgb.mean(axis=-1)
    slide = np.median(rgb[lum >= np.percentile(lum, 90)], axis=0)
    od = np.clip(-np.log(rgb / slide), 0.0, None)
    if order > 0:
        density = od.sum(axis=-1)
        thresholds = _stain_thresholds(density)
        t = thresholds[0] if thresholds is not None else float(density.mean())
        clear = ~ndi.binary_dilation(density > t, iterations=3)
        field = _fit_illumination(rgb, clear, order)
        if field is not None:
            od = np.clip(-np.log(rgb / field), 0.0, None)
    if sigma > 0:
        od = ndi.gaussian_filter(od, (sigma, sigma, 0.0))
    return od


def _fit_illumination(rgb: np.ndarray, clear: np.ndarray, order: int) -> np.ndarray | None:
    """Least-squares polynomial (degree `order`) of the slide colour over `clear` pixels."""
    rows, cols = clear.shape
    idx = np.flatnonzero(clear.ravel())
    if idx.size < 50:
        return None
    idx = idx[:: max(1, idx.size // 5000)]

    def design(flat):
        y = flat // cols / rows - 0.5
        x = flat % cols / cols - 0.5
        terms = [np.ones_like(y), y, x]
        if order >= 2:
            terms += [y * y, x * y, x * x]
        return np.stack(terms, axis=-1)

    coef, *_ = np.linalg.lstsq(design(idx), rgb.reshape(-1, 3)[idx], rcond=None)
    field = (design(np.arange(rows * cols)) @ coef).reshape(rows, cols, 3)
    return np.clip(field, 1.0 / 255.0, 1.0)


#: Optical density added before taking logarithms: about one grey level per channel.
_OD_FLOOR = 0.02


def _stain_thresholds(density: np.ndarray) -> tuple[float, float] | None:
    """Summed-OD thresholds (faint, dense) of stained material; None if impossible.

    ``dense`` is the lower of two multi-Otsu thresholds (it separates the dark class,
    nuclei and red cells, from the rest). ``faint`` is Otsu's threshold of the log
    density, i.e. relative to the slide's own level: pale cytoplasm that a dark nucleus
    pushes below ``dense`` stays above it, whatever the stain's strength.
    """
    try:
        dense = float(filters.threshold_multiotsu(density, 3)[0])
    except ValueError:
        return None
    faint = float(np.exp(filters.threshold_otsu(np.log(density + _OD_FLOOR))) - _OD_FLOOR)
    return min(faint, dense), dense


def _stained(density: np.ndarray, hysteresis: float):
    """Stained pixels and the dense ones among them, or None if the field is blank.

    Dense pixels seed the stained regions, which grow through attached pixels down to
    the lower of ``hysteresis`` times the dense threshold and the faint threshold
    (see :func:`_stain_thresholds`); unattached faint specks stay background.
    """
    thresholds = _stain_thresholds(density)
    if thresholds is None:
        return None
    t, t_dense = thresholds
    mask = filters.apply_hysteresis_threshold(density, min(hysteresis * t_dense, t), t_dense)
    mask = morphology.remove_small_objects(mask, max_size=20)
    return (mask, mask & (density > t_dense)) if mask.any() else None


def _hue_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between the median OD colour directions of two pixel sets."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    unit = [
        np.median(x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-9), axis=0) for x in (a, b)
    ]
    cos = unit[0] @ unit[1] / (np.linalg.norm(unit[0]) * np.linalg.norm(unit[1]) + 1e-12)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _nucleus_seeds(score, od, stained, dense, min_contrast, min_angle):
    """Seed nuclei (bool mask) and the largest seed's equivalent radius, or None."""
    values = score[stained]
    if values.size < 20 or float(np.ptp(values)) <= 0:
        return None
    t = float(filters.threshold_otsu(values))
    high, low = values[values > t], values[values <= t]
    if high.size == 0 or high.mean() < min_contrast * max(low.mean(), 1e-6):
        return None
    strong = (score > t) & stained
    clear_cut = high.mean() >= 2.0 * min_contrast * max(low.mean(), 1e-6)
    if not clear_cut and _hue_angle(od[strong], od[dense & ~strong]) < min_angle:
        return None  # only darker, not differently coloured: overlapping red cells
    seeds = ndi.binary_opening(strong, morphology.disk(1))
    lab, n = ndi.label(seeds)
    if n == 0:
        return None
    areas = np.bincount(lab.ravel())
    areas[0] = 0
    keep = areas >= 0.1 * areas.max()
    keep[0] = False
    return keep[lab], float(np.sqrt(areas.max() / np.pi))


def _cells(od, nuclei, stained, r_nuc, lobe_gap, max_cytoplasm):
    """Label image of leukocytes (1..n), each grown from one group of nucleus pieces."""
    dist_nuc, (ir, ic) = ndi.distance_transform_edt(~nuclei, return_indices=True)
    groups, n = ndi.label(dist_nuc <= max(1.0, lobe_gap * r_nuc))
    markers = np.where(nuclei, groups, 0).astype(np.int32)
    owner = markers[ir, ic]
    group_area = np.bincount(markers[nuclei], minlength=n + 1).astype(float)
    reach = max_cytoplasm * np.sqrt(group_area / np.pi)
    near = dist_nuc <= reach[owner]

    dt = ndi.distance_transform_edt(stained)
    rbc = stained & ~near
    outside = ~ndi.binary_dilation(stained, iterations=1)
    # Red-cell centres: distance-map peaks whose inscribed disc misses every nucleus.
    peaks = peak_local_max(
        dt,
        min_distance=max(2, int(0.4 * r_nuc)),
        labels=stained.astype(np.int32),
        exclude_border=False,
    )
    if len(peaks):
        pr, pc = peaks[:, 0], peaks[:, 1]
        ok = dist_nuc[pr, pc] > np.maximum(dt[pr, pc], 2.0)
        rbc[pr[ok], pc[ok]] = True
    rbc |= _red_cell_colour(od, markers, nuclei, stained, near, dt, outside, n, dist_nuc)

    grow = (dist_nuc <= 2) & stained & ~nuclei
    markers[grow] = owner[grow]
    markers[rbc & (markers == 0)] = n + 1
    markers[outside] = n + 2
    ws = segmentation.watershed(-dt, markers)
    cells = np.where((ws <= n) & stained & near, ws, 0)
    cells = _trim_to_free_edge(cells, outside, dist_nuc, owner, reach, n)

    # One filled component per cell, the one holding its nucleus.
    tidy = np.zeros_like(cells)
    for i, sl in enumerate(ndi.find_objects(cells), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mine = cells[sl] == i
        own_nuc = nuclei[sl] & (groups[sl] == i)
        mine = ndi.binary_opening(mine, morphology.disk(1)) | own_nuc
        lab, _ = ndi.label(mine)
        ids = np.unique(lab[own_nuc])
        mine = ndi.binary_fill_holes(np.isin(lab, ids[ids > 0]))
        view = tidy[sl]
        view[mine & (view == 0)] = i
    return tidy


def _trim_to_free_edge(cells, outside, dist_nuc, owner, reach, n, factor=2.0):
    """Bound each cell's cytoplasm by what its edge against bare slide shows.

    Where a cell borders unstained slide, its cytoplasm thickness is visible; red cells
    pressed against it have no such edge. A cell is cut at `factor` times the median
    visible thickness (plus 2 px), when at least 8 such edge pixels exist.
    """
    edge = (cells > 0) & ndi.binary_dilation(outside, iterations=2)
    ids = cells[edge]
    if ids.size == 0:
        return cells
    limit = reach.copy()
    for i in np.unique(ids):
        d = dist_nuc[edge][ids == i]
        if d.size >= 8:
            limit[i] = min(limit[i], factor * float(np.median(d)) + 2.0)
    return np.where(dist_nuc <= limit[owner], cells, 0)


def _red_cell_colour(od, markers, nuclei, stained, near, dt, outside, n, dist_nuc):
    """Red-cell-coloured regions near leukocytes, when the stain tells them apart."""
    far = stained & ~near & ~nuclei
    empty = np.zeros_like(stained)
    if far.sum() <= nuclei.sum():
        return empty  # too few red cells to learn their colour from
    first = markers.copy()
    first[far] = n + 1
    first[outside] = n + 2
    ws = segmentation.watershed(-dt, first)
    cyto = stained & ~nuclei & (ws <= n) & near & (dist_nuc > 1)
    if cyto.sum() < 20:
        return empty
    chroma = od / (np.linalg.norm(od, axis=-1, keepdims=True) + 1e-9)
    ref_rbc = np.median(chroma[far], axis=0)
    ref_cyto = np.median(chroma[cyto], axis=0)
    ref_rbc /= np.linalg.norm(ref_rbc) + 1e-9
    ref_cyto /= np.linalg.norm(ref_cyto) + 1e-9
    if np.degrees(np.arccos(np.clip(ref_rbc @ ref_cyto, -1.0, 1.0))) < 15.0:
        return empty
    to_rbc = np.arccos(np.clip(chroma @ ref_rbc, -1.0, 1.0))
    to_cyto = np.arccos(np.clip(chroma @ ref_cyto, -1.0, 1.0))
    r_nuc = np.sqrt(nuclei.sum() / np.pi / max(n, 1))
    red = (to_cyto - to_rbc > np.radians(5.0)) & stained & ~nuclei
    red = ndi.binary_opening(red, morphology.disk(max(1, int(0.1 * r_nuc)))) & (dist_nuc > 2)
    lab, _ = ndi.label(red)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= 0.1 * np.pi * r_nuc**2
    keep[0] = False
    return keep[lab]


def _refine_nuclei(score, cells, r_nuc):
    """Nucleus inside each cell by Li's threshold of the nuclear score, holes filled."""
    nucleus = np.zeros(cells.shape, bool)
    for i, sl in enumerate(ndi.find_objects(cells), start=1):
        if sl is None:
            continue
        mine = cells[sl] == i
        if mine.sum() < 10:
            continue
        values = score[sl][mine]
        if float(np.ptp(values)) <= 0:
            continue
        t = float(filters.threshold_li(values))
        nucleus[sl] |= (score[sl] > t) & mine
    nucleus = ndi.binary_opening(nucleus, morphology.disk(1))
    nucleus = ndi.binary_fill_holes(nucleus)
    nucleus = morphology.remove_small_objects(nucleus, max_size=int(0.05 * np.pi * r_nuc**2))
    return nucleus & (cells > 0)


def _vacuoles(holes, cells):
    """Codes for unstained pixels inside cells: small holes are vacuoles, big ones not."""
    lab, n = ndi.label(holes)
    codes = np.array([_BACKGROUND] + [_VACUOLE] * n, np.uint8)
    cell_area = np.bincount(cells.ravel())
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    owner = ndi.maximum(cells, lab, index=np.arange(n + 1)).astype(int)
    big = sizes > 0.1 * cell_area[owner]
    codes[big] = _BACKGROUND
    return codes[lab[holes]]


# --------------------------------------------------------------------------- files


def _names_json(labels: np.ndarray, names: Mapping[int, str] | None) -> str:
    table = label_names(labels, names)
    if names is not None:  # keep names given for values not painted (yet)
        table.update({k: v for k, v in _checked_names(names).items() if k != 0})
    return json.dumps({str(k): v for k, v in sorted(table.items())})


def _parse_names(text: str | None, source: str) -> dict[int, str] | None:
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise LabelsError(f"{source}: the stored label names are not valid JSON ({exc}).") from exc
    try:
        return _checked_names(raw)
    except LabelsError as exc:
        raise LabelsError(f"{source}: the stored label names are unusable: {exc}") from None


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or choose another name."
        )


def save_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    names: Mapping[int, str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Save a label image with its class names as PNG or TIFF.

    The names travel inside the file as JSON (``{"1": "nucleus", ...}``): a PNG iTXt
    chunk or the TIFF ImageDescription, both under the key ``NAMES_KEY``, so copying
    one file keeps everything. Values are stored losslessly: PNG as 8- or 16-bit
    grayscale (values up to 65535), TIFF as uint8/16/32.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.png``, ``.tif`` or ``.tiff``.
    labels : 2-D integer array
        Label values >= 0 (0 = not labelled). Booleans are saved as 0/1.
    names : mapping of int to str, optional
        Class names; defaults to :data:`MORPHOLOGY_CLASSES` for the values present,
        ``"label N"`` for others. Names of values not (yet) painted are kept too.
    overwrite : bool
        Replace an existing file. Without it an existing file raises and is untouched.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError
        If `path` exists and `overwrite` is false.
    LabelsError
        For non-integer or negative labels, a non-2-D array, values too large for the
        format, or an unknown extension.
    """
    path = Path(path)
    array = _check_labels(labels)
    if array.ndim != 2:
        raise LabelsError(
            f"labels has shape {array.shape}; PNG/TIFF label files hold one 2-D plane. "
            "Save stacks with write_labels_zarr."
        )
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise LabelsError(f"{path}: use a .png, .tif or .tiff file name for labels.")
    _refuse_overwrite(path, overwrite)
    top = int(array.max()) if array.size else 0
    text = _names_json(array, names)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary file beside `path`, renamed onto it only once complete.
    with safe_files.staged([path], overwrite=overwrite) as (tmp,):
        if suffix == ".png":
            _write_png(tmp, array, top, text)
        else:
            _write_tiff(tmp, array, top, text)
    return path


def _write_png(tmp: Path, array: np.ndarray, top: int, text: str) -> None:
    from PIL import Image, PngImagePlugin

    if top > 65535:
        raise LabelsError(
            f"labels reach {top}, more than a 16-bit PNG holds (65535); save as .tif."
        )
    info = PngImagePlugin.PngInfo()
    info.add_itxt(NAMES_KEY, text)
    if top <= 255:
        img = Image.fromarray(array.astype(np.uint8), mode="L")
    else:
        img = Image.fromarray(array.astype(np.uint16))
    img.save(tmp, format="PNG", pnginfo=info)


def _write_tiff(tmp: Path, array: np.ndarray, top: int, text: str) -> None:
    import tifffile

    if top > np.iinfo(np.uint32).max:
        raise LabelsError(f"labels reach {top}, more than uint32; use write_labels_zarr.")
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    description = json.dumps({NAMES_KEY: json.loads(text)})
    tifffile.imwrite(
        tmp, array.astype(dtype), description=description, metadata=None, compression=None
    )


def _read_png(path: Path) -> tuple[np.ndarray, str | None]:
    """(values, stored names JSON or None) of a label PNG."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("L", "I;16", "I;16B", "I", "P", "1"):
            raise LabelsError(
                f"{path} is a {img.mode} image; a label PNG is single-channel (8- or 16-bit gray)."
            )
        array = np.asarray(img)  # loads the pixels: a truncated file fails here
        return array, img.info.get(NAMES_KEY)


def _read_tiff(path: Path) -> tuple[np.ndarray, str | None]:
    """(values, stored names JSON or None) of a label TIFF."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        array = tif.asarray()
        desc = tif.pages[0].description if tif.pages else ""
    try:
        return array, json.dumps(json.loads(desc)[NAMES_KEY]) if desc else None
    except (ValueError, KeyError, TypeError):  # a description written by another tool
        return array, None


def load_labels(path: str | os.PathLike) -> tuple[np.ndarray, dict[int, str]]:
    """Load a label image and its class names saved by :func:`save_labels`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.png``, ``.tif`` or ``.tiff`` label file.

    Returns
    -------
    labels : numpy.ndarray
        The stored integer values, unchanged (uint8, uint16 or uint32).
    names : dict of int to str
        The stored names. Files from other tools (no stored names) get
        :func:`label_names` defaults for the values present.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    LabelsError
        If the file is not a single-plane integer image or its names are unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No label file at {path}.")
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise LabelsError(f"{path}: label files must be .png, .tif or .tiff.")
    try:
        array, text = _read_png(path) if suffix == ".png" else _read_tiff(path)
    except LabelsError:
        raise
    except (OSError, ValueError, SyntaxError, IndexError) as exc:  # truncated, not an image
        raise LabelsError(
            f"{path} could not be read as a label image ({exc}); the file may be truncated "
            "(an interrupted copy or save) or not an image. Restore it from a backup or "
            "save the labels again."
        ) from exc
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise LabelsError(
            f"{path} holds an array of shape {array.shape} and dtype {array.dtype}; "
            "a label file is one 2-D integer plane."
        )
    names = _parse_names(text, str(path))
    if names is None:
        names = label_names(array)
    return array, names


def write_labels_zarr(
    store_path: str | os.PathLike,
    group: str,
    labels: np.ndarray,
    names: Mapping[int, str] | None = None,
    *,
    overwrite: bool = False,
    chunks: tuple[int, ...] | None = None,
):
    """Write labels into a Zarr (v3) store next to the image and maps; names in attrs.

    Everything is checked before the store is touched; the array is written under a
    temporary name beside `group` and swapped in when complete, so a failed write leaves
    an old array (values and names) as it was. Other arrays are never touched.

    Parameters
    ----------
    store_path : str or os.PathLike
        The store's folder (created if missing; other arrays in it are left alone).
    group : str
        Path of the array inside the store, e.g. ``"labels"`` or ``"img_001/labels"``.
        A path that names a group (e.g. ``"img_001"``) is refused.
    labels : integer array (any number of dimensions)
        Label values >= 0, saved with their dtype.
    names : mapping of int to str, optional
        Class names (as in :func:`save_labels`); stored as the attribute ``NAMES_KEY``.
    overwrite : bool
        Replace an existing array at `group`; otherwise that raises `FileExistsError`.
    chunks : tuple of int, optional
        Chunk shape; default up to 1024 pixels per axis.

    Returns
    -------
    zarr.Array
        The written array.

    Raises
    ------
    FileExistsError
        If an array exists at `group` and `overwrite` is false.
    LabelsError
        For invalid labels, names, chunks or path, or a path that is a group or a
        non-Zarr folder.
    """
    import zarr

    array = _check_labels(labels)
    attrs = _names_attr(array, names)
    chunks = _zarr_chunks(array, chunks)
    path = _zarr_path(group)
    base = _local_store_folder(store_path)
    root = zarr.open_group(str(base), mode="a", use_consolidated=False)
    _check_zarr_target(root, base, path, overwrite)
    parent, _, name = path.rpartition("/")
    tmp = f"{parent}/.{name}.writing-{uuid.uuid4().hex[:12]}".lstrip("/")
    try:
        out = root.create_array(
            tmp,
            shape=array.shape,
            dtype=array.dtype,
            chunks=chunks,
            config={"write_empty_chunks": True},  # so a lost chunk can be told from zeros
        )
        out[...] = array
        out.attrs.update({NAMES_KEY: attrs, ALL_CHUNKS_KEY: True})
        _swap_folder(base / tmp, base / path)
    finally:
        shutil.rmtree(base / tmp, ignore_errors=True)
    return zarr.open_array(str(base), path=path, mode="r+")


def _names_attr(array: np.ndarray, names) -> dict:
    """The names attribute for `array`, or `LabelsError` if `names` is not int → str."""
    try:
        return json.loads(_names_json(array, names))
    except (ValueError, TypeError, AttributeError) as exc:
        raise LabelsError(
            f"names must map label values (integers) to class names, e.g. {{1: 'nucleus'}}; "
            f"got {names!r} ({exc}). Nothing was written."
        ) from exc


def _zarr_chunks(array: np.ndarray, chunks) -> tuple[int, ...]:
    if chunks is None:
        return tuple(min(max(s, 1), 1024) for s in array.shape)
    chunks = tuple(chunks)
    ok = len(chunks) == array.ndim and all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1 for c in chunks
    )
    if not ok:
        raise LabelsError(
            f"chunks must be {array.ndim} whole numbers >= 1 (one per axis of labels "
            f"{array.shape}), got {chunks!r}."
        )
    return tuple(int(c) for c in chunks)


def _zarr_path(group) -> str:
    """`group` as a clean array path inside the store ("a/b"), or `LabelsError`."""
    parts = str(group).strip("/").split("/")
    if not isinstance(group, str) or any(p in ("", ".", "..") for p in parts):
        raise LabelsError(
            f"group must be the path of an array inside the store, such as 'labels' or "
            f"'img_001/labels'; got {group!r}."
        )
    return "/".join(parts)


def _local_store_folder(store_path) -> Path:
    text = os.fspath(store_path)
    if "://" in text:
        raise LabelsError(f"{text}: write_labels_zarr writes to a local store folder only.")
    return Path(text)


def _check_zarr_target(root, base: Path, path: str, overwrite: bool) -> None:
    """Refuse a path through an array, a group, a non-Zarr folder, or (unasked) an array."""
    import zarr

    parts = path.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix in root and isinstance(root[prefix], zarr.Array):
            raise LabelsError(f"{base}: {prefix!r} is an array; {path!r} cannot go inside it.")
    if path in root and isinstance(root[path], zarr.Group):
        raise LabelsError(
            f"{base}: {path!r} is a group holding {sorted(root[path].keys())}, not a label "
            f"array; write to a path inside it, such as '{path}/labels'. Nothing was changed."
        )
    if path not in root and (base / path).exists():
        raise LabelsError(
            f"{base / path} exists but is not a Zarr array; move it or choose another group."
        )
    if path in root and not overwrite:
        raise FileExistsError(f"{base} already holds {path!r}; pass overwrite=True to replace it.")


def _swap_folder(new: Path, target: Path) -> None:
    """Rename folder `new` onto `target`; an old `target` is removed only once replaced."""
    with safe_files.deferred_interrupt():
        if not target.exists():
            os.rename(new, target)
            return
        backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(target, backup)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(backup, target)
            raise
    shutil.rmtree(backup, ignore_errors=True)


def read_labels_zarr(
    store_path: str | os.PathLike, group: str
) -> tuple[np.ndarray, dict[int, str]]:
    """Read labels and names written by :func:`write_labels_zarr`.

    Returns
    -------
    labels : numpy.ndarray
        The stored values with their stored dtype.
    names : dict of int to str
        Stored names, or :func:`label_names` defaults when the array has none.

    Raises
    ------
    FileNotFoundError
        If there is no Zarr store at `store_path`.
    KeyError
        If the store holds no array at `group`.
    LabelsError
        If the store or array is damaged: unreadable metadata or chunks, or chunks
        missing from an array written by :func:`write_labels_zarr` (Zarr would read
        them back as zeros without a word).
    """
    source = f"{store_path}/{group}"
    node = _open_zarr_array(store_path, group)
    if node.attrs.get(ALL_CHUNKS_KEY) and node.nchunks_initialized < node.nchunks:
        missing = node.nchunks - node.nchunks_initialized
        raise LabelsError(
            _damaged(
                source,
                f"{missing} of its {node.nchunks} chunks are missing (Zarr would read "
                "them back as 0, i.e. not labelled)",
            )
        )
    try:
        array = np.asarray(node[...])
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        raise LabelsError(_damaged(source, f"a chunk cannot be decoded ({exc})")) from exc
    stored = node.attrs.get(NAMES_KEY)
    names = _parse_names(json.dumps(stored), source) if stored is not None else label_names(array)
    return array, names


def _damaged(source: str, what: str) -> str:
    return (
        f"{source} is damaged: {what}. Restore the store from a backup or copy it again "
        "(an interrupted copy or sync leaves such stores), or write the labels again with "
        "write_labels_zarr."
    )


def _open_zarr_array(store_path, group: str):
    """The Zarr array at `group`, with errors that name the store and what to do."""
    import zarr

    try:
        root = zarr.open_group(str(store_path), mode="r")
    except FileNotFoundError as exc:  # also zarr's GroupNotFoundError
        raise FileNotFoundError(
            f"No Zarr store at {store_path} (no readable zarr.json there)."
        ) from exc
    except (ValueError, TypeError, KeyError) as exc:  # e.g. JSONDecodeError
        raise LabelsError(
            _damaged(str(store_path), f"its metadata (zarr.json) is unreadable ({exc})")
        ) from exc
    try:
        node = root.get(group)
    except (ValueError, TypeError, KeyError) as exc:
        raise LabelsError(
            _damaged(f"{store_path}/{group}", f"its metadata is unreadable ({exc})")
        ) from exc
    if node is None:
        raise KeyError(f"{store_path} holds no array {group!r}; found {sorted(root.keys())}.")
    if not isinstance(node, zarr.Array):
        raise LabelsError(
            f"{store_path}/{group} is a group holding {sorted(node.keys())}, not a label "
            f"array; pass the path of the array inside it, e.g. '{group}/labels'."
        )
    return node
