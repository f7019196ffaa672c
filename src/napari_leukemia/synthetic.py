"""Seeded synthetic blood-smear fields with exact morphology ground truth.

The real datasets may not ship with the plugin, and hand-painted segmentations are
never exact. This module draws plausible smear fields (background, red blood cells,
leukocytes / lymphoblasts with nucleus, cytoplasm, vacuoles and nucleoli) from a seed,
together with a label image that is exact for the drawn geometry, using the codes of
:data:`napari_leukemia.labels.MORPHOLOGY_CLASSES`.

The image is rendered as light absorbed by stained material (Beer-Lambert: optical
densities add where red cells overlap), then blurred (optics) and given sensor noise.
Pure numpy/scipy; no Qt, no napari.

Regenerate the shipped files with ``python -m napari_leukemia.synthetic --out sample_data``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from . import safe_files
from .labels import MORPHOLOGY_CLASSES

_CODE = {name: code for code, name in MORPHOLOGY_CLASSES.items()}
_NUCLEUS = _CODE["nucleus"]
_CYTOPLASM = _CODE["cytoplasm"]
_VACUOLE = _CODE["vacuole"]
_RBC = _CODE["red blood cell"]
_BACKGROUND = _CODE["background"]

__all__ = [
    "SAMPLES",
    "STAINS",
    "Stain",
    "SyntheticSmear",
    "main",
    "make_smear",
    "sample_smear",
    "write_samples",
]


@dataclass(frozen=True)
class Stain:
    """Colour model of one staining look.

    ``background`` is the RGB (0–1) of the lit empty slide; the other fields are
    optical densities per RGB channel (``-ln(transmission)``) of the stained
    material at unit thickness.
    """

    background: tuple[float, float, float]
    rbc: tuple[float, float, float]
    nucleus: tuple[float, float, float]
    cytoplasm: tuple[float, float, float]


#: Named stain presets. ``"lilac"``: cool, near-white bluish background, lilac-grey red
#: cells and violet nuclei (the look of the all4 ALL fields). ``"pink"``: warm greyish
#: background, salmon-pink red cells and blue-purple nuclei (the look of BCCD fields).
STAINS: dict[str, Stain] = {
    "lilac": Stain(
        background=(0.960, 0.985, 0.975),
        rbc=(0.34, 0.25, 0.05),
        nucleus=(0.52, 0.80, 0.05),
        cytoplasm=(0.32, 0.26, 0.03),
    ),
    "pink": Stain(
        background=(0.865, 0.880, 0.845),
        rbc=(0.08, 0.40, 0.29),
        nucleus=(0.80, 0.98, 0.16),
        cytoplasm=(0.09, 0.15, 0.03),
    ),
}


@dataclass(frozen=True)
class SyntheticSmear:
    """One synthetic smear field and its exact ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        ``uint8`` RGB image, shape ``(rows, cols, 3)``.
    labels : numpy.ndarray
        ``uint8`` label image, shape ``(rows, cols)``; every pixel holds a code of
        ``MORPHOLOGY_CLASSES`` (1 nucleus, 2 cytoplasm, 3 vacuole, 4 red blood cell,
        5 background). Where a red cell lies under a leukocyte the leukocyte wins.
    cell_bboxes : list of tuple of int
        One ``(min_row, min_col, max_row, max_col)`` box (max exclusive) per
        leukocyte, enclosing its nucleus, cytoplasm and vacuoles.
    """

    image: np.ndarray
    labels: np.ndarray
    cell_bboxes: list[tuple[int, int, int, int]]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Outline:
    """Star-shaped outline ``r(θ) = r0 · (1 + Σ a_k cos(kθ + φ_k)) · cleft(θ)``."""

    cy: float
    cx: float
    r0: float
    ks: np.ndarray
    amps: np.ndarray
    phases: np.ndarray
    cleft_depth: float = 0.0
    cleft_angle: float = 0.0
    cleft_width: float = 0.5

    @property
    def rmax(self) -> float:
        return self.r0 * (1.0 + float(np.abs(self.amps).sum()))

    def radius(self, theta: np.ndarray) -> np.ndarray:
        k_theta = self.ks[:, None, None] * theta[None] + self.phases[:, None, None]
        r = 1.0 + np.tensordot(self.amps, np.cos(k_theta), axes=1)
        if self.cleft_depth:
            delta = np.angle(np.exp(1j * (theta - self.cleft_angle)))
            r = r * (1.0 - self.cleft_depth * np.exp(-((delta / self.cleft_width) ** 2)))
        return self.r0 * r

    def polar(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance from the centre and outline radius for each pixel centre."""
        dy = rows[:, None] - self.cy
        dx = cols[None, :] - self.cx
        return np.hypot(dy, dx), self.radius(np.arctan2(dy, dx))


def _outline(rng: np.random.Generator, cy, cx, r0, elong, irregular, n_harm=4) -> _Outline:
    ks = np.arange(2, 2 + n_harm)
    amps = irregular * rng.standard_normal(n_harm) / ks
    amps[0] = rng.uniform(0.0, elong)
    return _Outline(cy, cx, r0, ks, amps, rng.uniform(0, 2 * np.pi, n_harm))


def _window(cy, cx, reach, shape) -> tuple[slice, slice]:
    r0 = max(0, int(np.floor(cy - reach)) - 1)
    r1 = min(shape[0], int(np.ceil(cy + reach)) + 2)
    c0 = max(0, int(np.floor(cx - reach)) - 1)
    c1 = min(shape[1], int(np.ceil(cx + reach)) + 2)
    return slice(r0, r1), slice(c0, c1)


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return field / max(float(field.std()), 1e-6)


def _low_frequency(rng: np.random.Generator, shape, n_waves=4) -> np.ndarray:
    """Smooth field of unit-ish amplitude made of a few long random waves."""
    rows = np.arange(shape[0]) / shape[0]
    cols = np.arange(shape[1]) / shape[1]
    field = np.zeros(shape)
    for _ in range(n_waves):
        fy, fx = rng.uniform(-1.2, 1.2, 2)
        # cos(a + b) = cos a cos b - sin a sin b: separable, so cheap on large fields
        a = 2 * np.pi * fy * rows + rng.uniform(0, 2 * np.pi)
        b = 2 * np.pi * fx * cols
        field += np.outer(np.cos(a), np.cos(b)) - np.outer(np.sin(a), np.sin(b))
    return field / np.sqrt(n_waves / 2)


# --------------------------------------------------------------------------- generator


def _jitter_stain(rng: np.random.Generator, stain: Stain) -> dict[str, np.ndarray]:
    """Per-seed stain variation: overall strength, hue tilt and brightness."""
    hue = np.exp(rng.normal(0.0, 0.05, 3))  # shared channel tilt = hue shift
    strength = rng.uniform(0.85, 1.15)
    grey = rng.uniform(0.0, 0.3)  # desaturation: part of the density becomes neutral
    out = {}
    for name in ("rbc", "nucleus", "cytoplasm"):
        own = np.exp(rng.normal(0.0, 0.03, 3)) * rng.uniform(0.9, 1.1)
        base = np.asarray(getattr(stain, name))
        base = (1 - grey) * base + grey * base.mean()
        out[name] = base * hue * own * strength
    # Nuclei range from blue-violet to pale magenta between preparations, but the red
    # density stays below the green one (purple, never blue-green).
    nuc = out["nucleus"] * rng.uniform(0.6, 1.1)
    red_ratio = stain.nucleus[0] / stain.nucleus[1] * rng.uniform(0.7, 1.1)
    nuc[0] = nuc[1] * min(red_ratio, 0.9)
    # Keep the defining contrasts of a stained smear whatever the jitter: the nucleus
    # is clearly the darkest material, and it absorbs red (relative to blue) more than
    # the red cells do.
    lum = np.array([0.3, 0.5, 0.2])
    floor = max(2.0 * out["cytoplasm"] @ lum, 1.6 * out["rbc"] @ lum)
    nuc = nuc * max(1.0, floor / (nuc @ lum))
    nuc[0] = max(nuc[0], nuc[2] + 1.3 * (out["rbc"][0] - out["rbc"][2]) + 0.08)
    nuc[1] = max(nuc[1], nuc[0] / 0.9)
    out["nucleus"] = nuc
    bg = np.asarray(stain.background) * np.exp(rng.normal(0.0, 0.012, 3))
    out["background"] = np.clip(bg * rng.uniform(0.97, 1.02), 0.0, 1.0)
    return out


def _place_leukocytes(rng, shape, n, diameter):
    """Non-overlapping, fully visible leukocyte outlines as (cell, nucleus) pairs."""
    cells: list[tuple[_Outline, _Outline]] = []
    for _ in range(n):
        for _attempt in range(200):
            d = diameter * rng.uniform(0.85, 1.15)
            shape_only = _outline(rng, 0.0, 0.0, d / 2, elong=0.1, irregular=0.035)
            reach = shape_only.rmax + 2
            if 2 * reach >= min(shape):
                continue
            cy = rng.uniform(reach, shape[0] - reach)
            cx = rng.uniform(reach, shape[1] - reach)
            gap = max(2.0, 0.06 * d)
            if all(np.hypot(cy - c.cy, cx - c.cx) > reach + c.rmax + gap for c, _ in cells):
                break
        else:
            return cells  # the field is full
        rc = d / 2
        cell = _Outline(cy, cx, rc, shape_only.ks, shape_only.amps, shape_only.phases)
        nc = rng.uniform(0.70, 0.88)  # nucleus : cell radius ratio (blast-like)
        off = rng.uniform(0.0, 0.75) * (1 - nc) * rc
        ang = rng.uniform(0, 2 * np.pi)
        nuc = _outline(rng, cy + off * np.sin(ang), cx + off * np.cos(ang), nc * rc, 0.12, 0.06, 5)
        if rng.random() < 0.3:  # nuclear cleft / indentation
            nuc = _Outline(
                nuc.cy, nuc.cx, nuc.r0, nuc.ks, nuc.amps, nuc.phases,
                cleft_depth=rng.uniform(0.1, 0.25),
                cleft_angle=rng.uniform(0, 2 * np.pi),
                cleft_width=rng.uniform(0.25, 0.5),
            )  # fmt: skip
        cells.append((cell, nuc))
    return cells


def _place_rbcs(rng, shape, density, radius, leukocytes):
    """Red-cell outlines by rejection sampling; touching and mild overlap allowed."""
    n_target = int(round(density * shape[0] * shape[1] / (np.pi * radius**2)))
    centres = np.empty((max(n_target, 1), 3))
    n = 0
    margin = 0.3 * radius
    leuk = np.array([(c.cy, c.cx, c.rmax) for c, _ in leukocytes]).reshape(-1, 3)
    for _ in range(40 * n_target):
        if n >= n_target:
            break
        r = radius * rng.uniform(0.88, 1.1)
        cy = rng.uniform(-margin, shape[0] + margin)
        cx = rng.uniform(-margin, shape[1] + margin)
        if n and np.any(
            np.hypot(centres[:n, 0] - cy, centres[:n, 1] - cx) < 0.78 * (centres[:n, 2] + r)
        ):
            continue
        if len(leuk) and np.any(
            np.hypot(leuk[:, 0] - cy, leuk[:, 1] - cx) < leuk[:, 2] + 0.15 * r
        ):
            continue
        centres[n] = cy, cx, r
        n += 1
    return [
        _outline(rng, cy, cx, r, elong=0.09, irregular=0.025, n_harm=3)
        for cy, cx, r in centres[:n]
    ]


def _check_args(shape, n_leukocytes, cell_diameter, rbc_diameter, rbc_density, noise, stain):
    if (
        len(shape) != 2
        or any(int(s) != s for s in shape)
        or min(shape) < 16
    ):  # fmt: skip
        raise ValueError(f"shape must be two integers >= 16 (rows, cols), got {shape!r}")
    if isinstance(n_leukocytes, int | np.integer):
        lo = hi = int(n_leukocytes)
    else:
        lo, hi = (int(v) for v in n_leukocytes)
    if not 0 <= lo <= hi:
        raise ValueError(
            f"n_leukocytes must be an int >= 0 or a (low, high) range with 0 <= low <= high,"
            f" got {n_leukocytes!r}"
        )
    if not cell_diameter >= 8:
        raise ValueError(f"cell_diameter must be >= 8 pixels, got {cell_diameter!r}")
    if rbc_diameter is not None and not rbc_diameter >= 4:
        raise ValueError(f"rbc_diameter must be >= 4 pixels or None, got {rbc_diameter!r}")
    if not 0 <= rbc_density <= 1.5:
        raise ValueError(f"rbc_density must be in [0, 1.5], got {rbc_density!r}")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise must be in [0, 0.5], got {noise!r}")
    if stain is not None and stain not in STAINS:
        raise ValueError(f"unknown stain {stain!r}; choose one of {sorted(STAINS)} or None")
    return lo, hi


def make_smear(
    seed: int = 0,
    shape: tuple[int, int] = (224, 224),
    n_leukocytes: int | tuple[int, int] = (1, 3),
    cell_diameter: float = 38.0,
    rbc_density: float = 0.5,
    vacuoles: bool = True,
    nucleoli: bool = True,
    stain: str | None = None,
    noise: float = 0.012,
    *,
    rbc_diameter: float | None = None,
    blur: float | None = None,
) -> SyntheticSmear:
    """Draw one synthetic blood-smear field and its exact label image.

    Everything comes from ``numpy.random.default_rng(seed)``, so identical arguments
    give identical arrays.

    Parameters
    ----------
    seed : int
        Seed of the random generator.
    shape : tuple of int
        ``(rows, cols)`` of the field.
    n_leukocytes : int or tuple of int
        Exact number of leukocytes, or an inclusive ``(low, high)`` range to draw from.
        Leukocytes never overlap each other and lie fully inside the field.
    cell_diameter : float
        Mean leukocyte diameter in pixels (each cell varies by ±15 %). About 30–45 px
        matches the 224×224 all4 fields, 150–200 px BCCD-like high magnification.
    rbc_density : float
        Target fraction of the field covered by red blood cells (0 = none; about 0.5
        is a typical monolayer, 0.8 dense).
    vacuoles : bool
        Allow small clear vacuoles in leukocyte cytoplasm (label 3).
    nucleoli : bool
        Allow 1–2 paler nucleoli inside nuclei (drawn only; labelled as nucleus).
    stain : str or None
        Key of :data:`STAINS`; ``None`` draws one from the seed. Hue, saturation and
        brightness are further jittered per seed.
    noise : float
        Standard deviation of Gaussian sensor noise, in units of full scale (0–1).
    rbc_diameter : float or None
        Mean red-cell diameter in pixels; ``None`` uses ``0.52 * cell_diameter``.
    blur : float or None
        Sigma of the optical Gaussian blur in pixels; ``None`` scales it with
        ``cell_diameter``.

    Returns
    -------
    SyntheticSmear
        ``image`` (uint8 RGB), ``labels`` (uint8 codes) and ``cell_bboxes``.

    Raises
    ------
    ValueError
        For invalid arguments, or when the requested leukocytes do not fit the field.
    """
    lo, hi = _check_args(
        shape, n_leukocytes, cell_diameter, rbc_diameter, rbc_density, noise, stain
    )
    shape = (int(shape[0]), int(shape[1]))
    rng = np.random.default_rng(seed)
    if stain is None:
        stain = sorted(STAINS)[int(rng.integers(len(STAINS)))]
    colours = _jitter_stain(rng, STAINS[stain])
    n = int(rng.integers(lo, hi + 1))
    if rbc_diameter is None:
        rbc_diameter = 0.52 * cell_diameter
    if blur is None:
        blur = 0.35 + 0.008 * cell_diameter

    leukocytes = _place_leukocytes(rng, shape, n, cell_diameter)
    if len(leukocytes) < n:
        raise ValueError(
            f"could place only {len(leukocytes)} of {n} non-overlapping leukocytes of "
            f"diameter ~{cell_diameter:g} px in a {shape[0]}x{shape[1]} field; use a larger "
            "shape, a smaller cell_diameter or fewer leukocytes"
        )
    rbcs = _place_rbcs(rng, shape, rbc_density, rbc_diameter / 2, leukocytes)

    labels = np.full(shape, _BACKGROUND, dtype=np.uint8)
    od = np.zeros((*shape, 3))
    rows_all = np.arange(shape[0], dtype=float)
    cols_all = np.arange(shape[1], dtype=float)

    # Red blood cells: biconcave discs, pale centre, densities add where they overlap.
    for rbc in rbcs:
        win = _window(rbc.cy, rbc.cx, rbc.rmax, shape)
        dist, rad = rbc.polar(rows_all[win[0]], cols_all[win[1]])
        rho = dist / rad
        inside = rho < 1.0
        if not inside.any():
            continue
        pallor = rng.uniform(0.45, 0.8)
        width = rng.uniform(0.32, 0.48)
        thick = (1.0 - pallor * np.exp(-((rho / width) ** 2))) * rng.uniform(0.85, 1.15)
        thick *= 1.0 + rng.uniform(0.15, 0.4) * np.exp(-(((rho - 0.8) / 0.12) ** 2))  # rim
        thick *= 1.0 - 0.4 * np.clip((rho - 0.85) / 0.15, 0.0, 1.0) ** 2  # soft edge
        od[win] += (thick * inside)[..., None] * colours["rbc"]
        labels[win][inside] = _RBC

    # Leukocytes replace whatever lies below them (the leukocyte wins).
    bboxes = []
    for cell, nuc in leukocytes:
        d = 2 * cell.r0
        win = _window(cell.cy, cell.cx, cell.rmax, shape)
        rows, cols = rows_all[win[0]], cols_all[win[1]]
        dist_c, rad_c = cell.polar(rows, cols)
        in_cell = dist_c < rad_c
        rim = max(1.5, 0.035 * d)
        dist_n, rad_n = nuc.polar(rows, cols)
        rho_n = dist_n / rad_n
        # A cytoplasm rim always separates nucleus and outside (also 8-connected).
        inner = ndi.binary_erosion(in_cell, np.ones((3, 3), bool))
        in_nuc = (rho_n < 1.0) & (dist_c < rad_c - rim) & inner
        cyto = in_cell & ~in_nuc
        vac = np.zeros_like(in_cell)
        if vacuoles:
            vac = _draw_vacuoles(rng, in_cell, cyto, d)
        local = np.where(in_nuc, _NUCLEUS, np.where(vac, _VACUOLE, _CYTOPLASM))

        # Optical density inside the cell.
        tex_fine = _smooth_noise(rng, in_cell.shape, max(0.6, d / 45))
        tex_coarse = _smooth_noise(rng, in_cell.shape, max(1.2, d / 14))
        chroma = rng.uniform(0.12, 0.24)
        density = rng.uniform(0.85, 1.2)
        nuc_thick = density * (1.0 + chroma * (0.75 * tex_fine + 0.55 * tex_coarse))
        nuc_thick *= 1.0 + 0.12 * np.clip((rho_n - 0.8) / 0.2, 0.0, 1.0)  # membrane
        if nucleoli and rng.random() < 0.75:
            nuc_thick *= _nucleoli(rng, rows, cols, nuc, in_nuc)
        cyto_thick = rng.uniform(0.8, 1.15) * (1.0 + 0.08 * tex_coarse)
        cyto_thick = cyto_thick * (1.0 + 0.25 * np.clip(dist_c / rad_c - 0.8, 0, 1) / 0.2)
        cyto_thick = np.where(vac, 0.15 * cyto_thick, cyto_thick)
        cell_od = np.where(
            in_nuc[..., None],
            np.clip(nuc_thick, 0.2, None)[..., None] * colours["nucleus"],
            cyto_thick[..., None] * colours["cytoplasm"],
        )
        od[win] = np.where(in_cell[..., None], cell_od, od[win])
        labels[win] = np.where(in_cell, local, labels[win])

        rr, cc = np.nonzero(in_cell)
        r0, c0 = win[0].start, win[1].start
        bboxes.append(
            (
                int(rr.min() + r0),
                int(cc.min() + c0),
                int(rr.max() + r0 + 1),
                int(cc.max() + c0 + 1),
            )
        )

    # Illumination: slightly uneven, tinted background; optics; sensor noise.
    light = colours["background"] * (1.0 + 0.025 * _low_frequency(rng, shape)[..., None])
    tint = rng.normal(0.0, 0.01, 3)  # colour drift across the field
    light = light * (1.0 + _low_frequency(rng, shape)[..., None] * tint)
    image = light * np.exp(-od)
    image = ndi.gaussian_filter(image, (blur, blur, 0), mode="nearest")
    if noise:
        image = image + rng.normal(0.0, noise, image.shape)
    image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return SyntheticSmear(image=image, labels=labels, cell_bboxes=bboxes)


def _draw_vacuoles(rng, in_cell, cyto, d) -> np.ndarray:
    """Small discs lying wholly in cytoplasm, never touching the background."""
    n = int(rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))
    vac = np.zeros_like(in_cell)
    if n == 0:
        return vac
    # Keep a 1-pixel cytoplasm margin to the background (8-connectivity).
    allowed = cyto & ndi.binary_erosion(in_cell, np.ones((3, 3), bool))
    depth = ndi.distance_transform_edt(allowed)
    rows, cols = np.indices(in_cell.shape)
    for _ in range(n):
        r = max(1.5, d * rng.uniform(0.035, 0.07))
        cand = np.flatnonzero(depth.ravel() >= r)
        if cand.size == 0:
            cand = np.flatnonzero(depth.ravel() >= max(1.5, 0.8 * depth.max()))
            if cand.size == 0:
                break
        k = cand[int(rng.integers(cand.size))]
        cy, cx = divmod(int(k), in_cell.shape[1])
        r = min(r, float(depth[cy, cx]))
        vac |= ((rows - cy) ** 2 + (cols - cx) ** 2 < r * r) & allowed
    # Any vacuole component not touching cytoplasm (a pocket inside the nucleus) is undone.
    comp, n_comp = ndi.label(vac, np.ones((3, 3), bool))
    if n_comp:
        rest = cyto & ~vac
        touching = ndi.binary_dilation(rest, np.ones((3, 3), bool))
        keep = np.zeros(n_comp + 1, bool)
        keep[np.unique(comp[touching & vac])] = True
        keep[0] = False
        vac = keep[comp]
    return vac


def _nucleoli(rng, rows, cols, nuc: _Outline, in_nuc) -> np.ndarray:
    """Multiplicative factor (< 1 inside 1–2 soft pale nucleoli) on nuclear density."""
    factor = np.ones(in_nuc.shape)
    for _ in range(int(rng.integers(1, 3))):
        rad = nuc.r0 * rng.uniform(0.10, 0.17)
        ang = rng.uniform(0, 2 * np.pi)
        off = rng.uniform(0.0, 0.5) * nuc.r0
        cy, cx = nuc.cy + off * np.sin(ang), nuc.cx + off * np.cos(ang)
        q = rng.uniform(0.7, 1.0)
        d2 = ((rows[:, None] - cy) / q) ** 2 + (cols[None, :] - cx) ** 2
        factor *= 1.0 - rng.uniform(0.35, 0.55) * np.exp(-((d2 / rad**2) ** 2))
    return np.where(in_nuc, factor, 1.0)


# --------------------------------------------------------------------------- samples

#: The shipped sample fields: file stem → (display name, ``make_smear`` arguments).
SAMPLES: dict[str, tuple[str, dict]] = {
    "smear_224": (
        "synthetic smear 224",
        dict(
            seed=0,
            shape=(224, 224),
            n_leukocytes=(2, 3),
            cell_diameter=40.0,
            rbc_density=0.5,
            stain="lilac",
        ),
    ),
    "smear_640x480": (
        "synthetic smear 640x480",
        dict(
            seed=0,
            shape=(480, 640),
            n_leukocytes=(1, 2),
            cell_diameter=175.0,
            rbc_density=0.9,
            stain="pink",
            noise=0.008,
        ),
    ),
}


def sample_smear(name: str, seed: int | None = None) -> SyntheticSmear:
    """Generate one of the shipped :data:`SAMPLES` (optionally with another seed).

    Parameters
    ----------
    name : str
        A key of :data:`SAMPLES`, e.g. ``"smear_224"``.
    seed : int or None
        Override the sample's fixed seed; ``None`` reproduces the shipped file.
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of {sorted(SAMPLES)}")
    kwargs = dict(SAMPLES[name][1])
    if seed is not None:
        kwargs["seed"] = seed
    return make_smear(**kwargs)


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG", optimize=True)


def write_samples(
    out_dir: str | os.PathLike, seed: int | None = None, overwrite: bool = False
) -> list[Path]:
    """Write the shipped sample images and their label images as PNG files.

    For each sample ``<stem>`` of :data:`SAMPLES` this writes ``<stem>.png`` (RGB)
    and ``<stem>_labels.png`` (8-bit label codes).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Destination folder (created if missing).
    seed : int or None
        Seed for every sample; ``None`` uses each sample's fixed seed.
    overwrite : bool
        Replace existing files. Without it nothing is written if any target exists.

    Returns
    -------
    list of pathlib.Path
        The written files, image then labels for each sample.

    Raises
    ------
    FileExistsError
        If a target file exists and ``overwrite`` is false (no file is touched).
    """
    out = Path(out_dir)
    targets = {stem: (out / f"{stem}.png", out / f"{stem}_labels.png") for stem in SAMPLES}
    existing = [p for pair in targets.values() for p in pair if p.exists()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing)
        raise FileExistsError(
            f"refusing to overwrite existing sample files ({names}); pass overwrite=True "
            "(CLI: --overwrite) to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = [p for pair in targets.values() for p in pair]
    # Unique temporary files beside the targets, all renamed once every file is complete:
    # a failure leaves the old files as they were and never touches a user's other files.
    with safe_files.staged(written, overwrite=overwrite) as temps:
        for i, stem in enumerate(targets):
            smear = sample_smear(stem, seed)
            _save_png(temps[2 * i], smear.image)
            _save_png(temps[2 * i + 1], smear.labels)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: regenerate the ``sample_data/`` files."""
    parser = argparse.ArgumentParser(
        prog="python -m napari_leukemia.synthetic",
        description="Regenerate the synthetic sample smears and their exact label images "
        f"({', '.join(f'{s}.png' for s in SAMPLES)} and *_labels.png).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed for all samples (default: fixed seeds)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = write_samples(args.out, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    print(f"wrote {len(paths)} files in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
