"""Find white blood cells / leukaemic blasts in a blood-smear field (v2, exploring)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage import measure, morphology, segmentation
from skimage.feature import peak_local_max
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.transform import downscale_local_mean

from .images import as_rgb, check_2d

BBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Cell:
    bbox: BBox
    mask: np.ndarray = field(repr=False)
    score: float

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def centroid(self) -> tuple[float, float]:
        rows, cols = np.nonzero(self.mask)
        return (float(rows.mean()) + self.bbox[0], float(cols.mean()) + self.bbox[1])


def _working_image(rgb, work_side):
    factor = max(1, int(np.ceil(max(rgb.shape[:2]) / work_side)))
    if factor == 1:
        return rgb, 1
    rows, cols = rgb.shape[0] // factor, rgb.shape[1] // factor
    small = downscale_local_mean(rgb[: rows * factor, : cols * factor], (factor, factor, 1))
    return small, factor


EPS = 0.02


def _features(rgb):
    lum = rgb.mean(axis=-1)
    bright = lum >= np.percentile(lum, 90)
    background = np.median(rgb[bright], axis=0)
    od = -np.log(np.clip(rgb, 1 / 255, 1.0) / np.clip(background, 1 / 255, 1.0))
    density = np.clip(od, 0, None).mean(axis=-1)
    gray_like = float(np.ptp(rgb, axis=-1).max()) < 2.0 / 255.0
    if gray_like:
        colour = density[..., None]
    else:
        logs = np.log(rgb + EPS) - np.log(background + EPS)
        # f: blue over green (nuclear stain), g: blue over red (not eosin-pink)
        colour = np.stack([logs[..., 2] - logs[..., 1], logs[..., 2] - logs[..., 0]], axis=-1)
    return colour, density, gray_like


def _rbc_radius(foreground):
    fg = ndi.binary_closing(foreground, morphology.disk(1))
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg, morphology.disk(1)))
    props = [p for p in measure.regionprops(measure.label(fg)) if p.area > 30]
    if not props:
        return None
    area = sum(p.area for p in props)
    perim = sum(p.perimeter for p in props)
    return 2.0 * area / perim


def detect_cells(image, *, min_score=0.3, work_side=320, q_nuc=0.5, q_cyto=0.15,
                 split_ratio=0.85, debug=False):
    check_2d(image)
    rgb_full = as_rgb(image)
    rgb, factor = _working_image(rgb_full, work_side)
    colour, density, gray_like = _features(rgb)
    colour = ndi.gaussian_filter(colour, (1.0, 1.0, 0))
    density = ndi.gaussian_filter(density, 1.0)
    if np.ptp(density) < 0.03:
        return [] if not debug else {}
    fg = density > max(threshold_otsu(density), 0.03)
    r_rbc = _rbc_radius(fg) or 0.03 * max(rgb.shape)
    a_rbc = np.pi * r_rbc**2
    f0 = colour[..., 0]
    try:
        t0 = float(threshold_multiotsu(f0, 3)[-1])
    except ValueError:
        return [] if not debug else {}
    seed = f0 > t0
    if seed.sum() < 4:
        return [] if not debug else {}
    c_nuc = np.median(colour[seed], axis=0)
    try:
        t_fg = float(threshold_multiotsu(density, 3)[0])
    except ValueError:
        t_fg = 0.03
    rest = (density > max(t_fg, 0.03)) & ~ndi.binary_dilation(seed, iterations=2)
    c_rbc = np.median(colour[rest], axis=0) if rest.sum() > 20 else np.zeros_like(c_nuc)
    c_bg = np.zeros_like(c_nuc)

    def toward_nucleus(origin):
        axis = c_nuc - origin
        return ((colour - origin) @ axis) / max(float(axis @ axis), 1e-6)

    q = np.minimum(toward_nucleus(c_rbc), toward_nucleus(c_bg))
    nuclei = q > q_nuc
    nuclei = ndi.binary_opening(nuclei, morphology.disk(1))
    nuclei = ndi.binary_fill_holes(nuclei)
    nuclei = morphology.remove_small_objects(nuclei, max_size=max(3, int(0.01 * a_rbc)))
    if not nuclei.any():
        return [] if not debug else {}
    material = ndi.binary_opening(q > q_cyto, morphology.disk(1)) | nuclei
    material_raw = material
    material = ndi.binary_fill_holes(material)
    mlab = measure.label(material)
    keep = np.unique(mlab[nuclei])
    material = np.isin(mlab, keep[keep > 0])
    # split touching cells at necks of the material mask
    dist = ndi.distance_transform_edt(material)
    cells_lab = _split_at_necks(dist, material, split_ratio)
    # drop regions without nucleus
    has_nuc = np.zeros(cells_lab.max() + 1, bool)
    has_nuc[np.unique(cells_lab[nuclei])] = True
    has_nuc[0] = False
    cells_lab = np.where(has_nuc[cells_lab], cells_lab, 0)
    cells_lab, _, _ = segmentation.relabel_sequential(cells_lab)
    out = []
    contrast_nuc = float(np.linalg.norm(c_nuc - c_rbc))
    for p in measure.regionprops(cells_lab):
        cmask = ndi.binary_fill_holes(p.image)
        nuc_mask = nuclei[p.slice] & cmask
        area = cmask.sum()
        rel = area / a_rbc
        s_size = float(np.clip((rel - 0.1) / 0.4, 0, 1)) * float(np.clip((40 - rel) / 20, 0, 1))
        cc = np.median(colour[p.slice][nuc_mask], axis=0)
        contrast = min(float(np.linalg.norm(cc - c_rbc)), float(np.linalg.norm(cc - c_bg)))
        s_stain = float(1 - np.exp(-contrast / 0.15))
        s_shape = float(p.solidity)
        score = float(np.clip(s_stain * s_size * s_shape, 0, 1))
        out.append((score, p.label))
    if debug:
        return dict(material_raw=material_raw, q=q, density=density, fg=fg, nuclei=nuclei, material=material,
                    cells=cells_lab, r_rbc=r_rbc, c_nuc=c_nuc, c_rbc=c_rbc,
                    scores=out, factor=factor, contrast=contrast_nuc)
    full = np.repeat(np.repeat(cells_lab, factor, 0), factor, 1)
    pad_r = rgb_full.shape[0] - full.shape[0]
    pad_c = rgb_full.shape[1] - full.shape[1]
    full = np.pad(full, ((0, pad_r), (0, pad_c)), mode="edge")
    objects = ndi.find_objects(full)
    cells = []
    for score, label in out:
        if score < min_score:
            continue
        sl = objects[label - 1]
        m = ndi.binary_fill_holes(full[sl] == label)
        bbox = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        cells.append(Cell(bbox=bbox, mask=m, score=score))
    cells.sort(key=lambda c: -c.score)
    return cells


def _split_at_necks(dist, mask, ratio):
    peaks = peak_local_max(dist, min_distance=2, threshold_abs=1.0, labels=measure.label(mask),
                           exclude_border=False)
    markers = np.zeros(mask.shape, int)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = segmentation.watershed(-dist, markers, mask=mask)
    n = regions.max()
    if n == 0:
        return measure.label(mask)
    peak_val = np.zeros(n + 1)
    peak_val[1:] = ndi.maximum(dist, regions, np.arange(1, n + 1))
    # saddle height between touching regions
    saddles = {}
    for a, b, da, db in (
        (regions[:, 1:], regions[:, :-1], dist[:, 1:], dist[:, :-1]),
        (regions[1:, :], regions[:-1, :], dist[1:, :], dist[:-1, :]),
    ):
        m = (a != b) & (a > 0) & (b > 0)
        for x, y, v in zip(a[m].tolist(), b[m].tolist(), np.minimum(da[m], db[m]).tolist(),
                           strict=True):
            key = (min(x, y), max(x, y))
            if v > saddles.get(key, -1):
                saddles[key] = v
    parent = np.arange(n + 1)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # merge from highest saddle down (like a watershed with dynamic criterion)
    for (a, b), s in sorted(saddles.items(), key=lambda kv: -kv[1]):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if s >= ratio * min(peak_val[ra], peak_val[rb]):
            keep, drop = (ra, rb) if peak_val[ra] >= peak_val[rb] else (rb, ra)
            parent[drop] = keep
    lut = np.array([find(i) for i in range(n + 1)])
    return lut[regions]


def cells_to_labels(cells, shape):
    labels = np.zeros(tuple(shape)[:2], np.int32)
    for i, c in enumerate(cells):
        r0, c0, r1, c1 = c.bbox
        region = labels[r0:r1, c0:c1]
        region[c.mask & (region == 0)] = i + 1
    return labels
