"""How much of an attribution map falls inside labelled regions.

The pure core behind the quantification table and plots: numpy arrays in, pandas
DataFrames out, no Qt. Metric definitions follow the localisation metrics of
CLEVR-XAI (Arras, Osman & Samek 2022, "CLEVR-XAI: A benchmark dataset for the ground
truth evaluation of neural network explanations", Information Fusion 81: 14-40) and
Quantus (Hedström et al. 2023, "Quantus: An explainable AI toolkit for responsible
evaluation of neural network explanations and beyond", JMLR 24(34): 1-11), plus the
protocol of document 003 (a pixel is *relevant* when its value is above the mean of
the map; count relevant pixels per class).

Conventions
-----------
* Label value 0 means "not labelled": it gets no row, but its pixels stay in every
  denominator (the shares are shares of the whole map, so painting only the nucleus
  does not inflate its share).
* Negative relevance is clipped at zero by default (``sign="positive"``), see
  :func:`quantify`.
* Every metric is invariant to multiplying the map by a positive number, except
  when `threshold` is an absolute number.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._callable_module import make_callable
from .images import as_label_image
from .labels import LabelsError
from .labels import label_names as _label_names

__all__ = [
    "METRICS",
    "QuantifyError",
    "QuantifyWarning",
    "quantify",
    "quantify_many",
    "relevant_mask",
    "summarize",
]

#: Metric columns of :func:`quantify`, in table order (after label, name, pixels).
METRICS: tuple[str, ...] = (
    "relevant_fraction",
    "relevance_mass",
    "relevance_density",
    "rank_accuracy",
    "pointing_game",
)

COLUMNS: tuple[str, ...] = (
    "label",
    "name",
    "pixels",
    "area_fraction",
    "relevant_pixels",
    "relevant_fraction",
    "relevance_mass",
    "relevance_density",
    "rank_accuracy",
    "pointing_game",
    "defined",
)

_SIGNS = ("positive", "absolute", "signed")


class QuantifyError(ValueError):
    """Inputs `quantify` cannot use; the message names the problem and what to do."""


class QuantifyWarning(UserWarning):
    """The result exists but says little (empty labels, a constant or all-zero map)."""


# --------------------------------------------------------------------------- checks


def _check_map(relevance) -> np.ndarray:
    array = np.asarray(relevance)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        raise QuantifyError(
            f"The relevance map has shape {array.shape}, i.e. colour channels. Pass the "
            "attribution array itself (2-D, one value per pixel), not a rendered heatmap; "
            "for a rendered heatmap use one channel, e.g. heatmap[..., 0] as document 003 did."
        )
    if array.ndim != 2:
        raise QuantifyError(
            f"The relevance map has shape {array.shape}; a 2-D map (rows, cols) is needed. "
            "For several maps use quantify_many."
        )
    if array.size == 0:
        raise QuantifyError(f"The relevance map is empty (shape {array.shape}).")
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise QuantifyError(
            f"The relevance map has dtype {array.dtype}; it must hold numbers (float or int)."
        )
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum() - n_nan)
        raise QuantifyError(
            f"The relevance map holds {n_nan} NaN and {n_inf} infinite values (of "
            f"{array.size}). Fix the attribution, or replace them explicitly, e.g. "
            "numpy.nan_to_num(map, nan=0.0, posinf=0.0, neginf=0.0)."
        )
    return array


def _check_label_image(labels) -> np.ndarray:
    array = as_label_image(labels, QuantifyError)
    if array.ndim != 2:
        raise QuantifyError(
            f"The labels have shape {array.shape}; a 2-D label image (rows, cols) is needed."
        )
    if array.size == 0:
        raise QuantifyError(
            f"The label image is empty (shape {array.shape}): it has no pixels to compare "
            "with the map. Pass the label layer painted on the map's image."
        )
    return array


def _check_sign(sign: str) -> str:
    if sign not in _SIGNS:
        raise QuantifyError(f"sign must be one of {_SIGNS}, got {sign!r}.")
    return sign


def _signed_map(array: np.ndarray, sign: str) -> np.ndarray:
    if sign == "positive":
        return np.maximum(array, 0.0)
    if sign == "absolute":
        return np.abs(array)
    return array


# --------------------------------------------------------------------------- geometry


def _as_transform(transform):
    from .roi import RoiTransform

    if isinstance(transform, RoiTransform):
        return transform
    if isinstance(transform, Mapping):
        try:
            return RoiTransform(
                origin=tuple(float(v) for v in transform["origin"]),
                scale=tuple(float(v) for v in transform["scale"]),
                image_shape=tuple(int(v) for v in transform["image_shape"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QuantifyError(
                "transform must be a RoiTransform or its as_dict() form with 'origin', "
                f"'scale' and 'image_shape'; got {dict(transform)!r}."
            ) from exc
    raise QuantifyError(
        f"transform must be a RoiTransform or a dict from RoiTransform.as_dict(), "
        f"got {type(transform).__name__}."
    )


def _nearest_take(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """labels[rows][:, cols] by nearest pixel centre; positions outside become 0."""
    r = np.floor(rows + 0.5).astype(np.int64)
    c = np.floor(cols + 0.5).astype(np.int64)
    r_ok = (r >= 0) & (r < labels.shape[0])
    c_ok = (c >= 0) & (c < labels.shape[1])
    out = labels[np.ix_(np.clip(r, 0, labels.shape[0] - 1), np.clip(c, 0, labels.shape[1] - 1))]
    if not (r_ok.all() and c_ok.all()):
        out = np.where(r_ok[:, None] & c_ok[None, :], out, 0)
    return out


def _align(relevance, labels, transform, resample):
    """Bring map and labels onto one pixel grid (see `quantify`, *Resolution*)."""
    if transform is not None:
        t = _as_transform(transform)
        if tuple(labels.shape) != tuple(t.image_shape):
            raise QuantifyError(
                f"The labels have shape {labels.shape} but the map's ROI transform belongs "
                f"to an image of shape {tuple(t.image_shape)}: the labels come from a "
                "different image. Use the label layer painted on the image the map was "
                "computed from (or, if the labels are already on the map's grid, pass no "
                "transform)."
            )
        rows = t.translate[0] + np.arange(relevance.shape[0]) * t.scale[0]
        cols = t.translate[1] + np.arange(relevance.shape[1]) * t.scale[1]
        return relevance, _nearest_take(labels, rows, cols)
    if relevance.shape == labels.shape:
        return relevance, labels
    if resample is None:
        raise QuantifyError(
            f"The relevance map has shape {relevance.shape} but the labels have shape "
            f"{labels.shape}. Pass the map's ROI transform (transform=...) if the map "
            "covers a ROI of the labelled image, or resample='labels' / resample='map' "
            "if both cover the same field at different resolutions."
        )
    if resample == "labels":
        h, w = relevance.shape
        rows = (np.arange(h) + 0.5) * labels.shape[0] / h - 0.5
        cols = (np.arange(w) + 0.5) * labels.shape[1] / w - 0.5
        return relevance, _nearest_take(labels, rows, cols)
    if resample == "map":
        from skimage.transform import resize

        resized = resize(
            relevance, labels.shape, order=1, preserve_range=True, anti_aliasing=False
        )
        return resized, labels
    raise QuantifyError(f"resample must be None, 'labels' or 'map', got {resample!r}.")


# --------------------------------------------------------------------------- thresholds


def _unit_map(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(values / 2**e, e): a map whose sums and means neither overflow nor underflow.

    Maps near 1e308 overflow when summed, subnormal maps lose their bits (issue 14 #16);
    for those, e brings max |values| into [0.5, 1). Scaling by a power of two is exact.
    Maps within 2**±256 need none of it and are returned as they are (e = 0, no copy).
    """
    top = max(float(values.max()), -float(values.min()))
    exponent = int(np.frexp(top)[1]) if top > 0.0 else 0
    if abs(exponent) <= 256:
        return values, 0
    return np.ldexp(values, -exponent), exponent


def _threshold(values: np.ndarray, threshold, scaled=None) -> tuple[np.ndarray, float, str]:
    """Mask of relevant pixels, the threshold in map units, and a text form of the rule.

    Named rules are computed and compared on the map scaled by a power of two
    (`scaled`, from `_unit_map`), so maps near 1e308 or subnormal maps give the same
    mask as the same map near 1; numeric thresholds compare in map units.
    """
    if isinstance(threshold, bool):
        raise QuantifyError("threshold must be a rule name or a number, not a bool.")
    if isinstance(threshold, int | float | np.integer | np.floating):
        value = float(threshold)
        if not np.isfinite(value):
            raise QuantifyError(f"A numeric threshold must be finite, got {threshold!r}.")
        return values > value, value, f"{value:g}"
    if not isinstance(threshold, str):
        raise QuantifyError(
            f"threshold must be 'mean', 'percentile:P', 'topk:N', 'otsu' or a number; "
            f"got {threshold!r}."
        )
    unit, exponent = _unit_map(values) if scaled is None else scaled
    t_unit, rule = _rule_threshold(unit, threshold)
    if t_unit == -np.inf:  # 'topk:N' with N >= pixels: just below the smallest value
        return np.ones(values.shape, bool), float(np.nextafter(values.min(), -np.inf)), rule
    return unit > t_unit, float(np.ldexp(t_unit, exponent)), rule


def _rule_threshold(values: np.ndarray, threshold: str) -> tuple[float, str]:
    """Threshold of a named rule, in the units of `values`."""
    rule = threshold.strip().lower()
    if rule == "mean":
        return float(values.mean()), "mean"
    if rule == "otsu":
        if float(values.max()) == float(values.min()):
            return float(values.max()), "otsu"
        from skimage.filters import threshold_otsu

        return float(threshold_otsu(values)), "otsu"
    kind, _, arg = rule.partition(":")
    if kind == "percentile":
        try:
            p = float(arg)
        except ValueError:
            p = float("nan")
        if not 0.0 <= p <= 100.0:
            raise QuantifyError(f"'percentile:P' needs P within [0, 100], got {threshold!r}.")
        return float(np.percentile(values, p)), f"percentile:{p:g}"
    if kind == "topk":
        try:
            k = int(arg)
        except ValueError:
            k = -1
        if k < 1:
            raise QuantifyError(f"'topk:N' needs a whole number N >= 1, got {threshold!r}.")
        flat = values.ravel()
        if k >= flat.size:  # every pixel is relevant
            return -np.inf, f"topk:{k}"
        # Strictly above the (k+1)-th largest value: at most k pixels (fewer on ties).
        return float(np.partition(flat, flat.size - k - 1)[flat.size - k - 1]), f"topk:{k}"
    raise QuantifyError(
        f"Unknown threshold {threshold!r}; use 'mean', 'percentile:P', 'topk:N', 'otsu' "
        "or a number."
    )


def relevant_mask(relevance, threshold="mean", sign: str = "positive") -> np.ndarray:
    """Boolean mask of *relevant* pixels: sign-handled map strictly above the threshold.

    Parameters
    ----------
    relevance : 2-D array of float
        Attribution map.
    threshold : str or float
        ``"mean"`` (document 003), ``"percentile:P"`` (P in [0, 100]), ``"topk:N"``
        (at most the N largest values), ``"otsu"`` or a number in map units.
    sign : {"positive", "absolute", "signed"}
        How negative values are treated before thresholding (see :func:`quantify`).

    Returns
    -------
    numpy.ndarray of bool, same shape as `relevance`.
    """
    values = _signed_map(_check_map(relevance), _check_sign(sign))
    return _threshold(values, threshold)[0]


# --------------------------------------------------------------------------- quantify


def quantify(
    relevance,
    labels,
    label_names: Mapping[int, str] | None = None,
    threshold="mean",
    *,
    sign: str = "positive",
    transform=None,
    resample: str | None = None,
) -> pd.DataFrame:
    """Measure how relevance falls on labelled regions: one row per label present.

    Parameters
    ----------
    relevance : 2-D array of float, (rows, cols)
        One attribution map (any units; only order and ratios matter). NaN or inf
        values raise `QuantifyError`.
    labels : 2-D integer array
        Label image; 0 = not labelled (no row, but counted in denominators).
    label_names : mapping of int to str, optional
        Names for label values; default :data:`~napari_leukemia.labels.MORPHOLOGY_CLASSES`
        (1 nucleus, 2 cytoplasm, 3 vacuole, 4 red blood cell, 5 background), then
        ``"label N"``.
    threshold : str or float
        Rule for *relevant* pixels (sign-handled value strictly above ``t``):
        ``"mean"``: t = mean of the map over all its pixels (document 003's protocol);
        ``"percentile:P"``: t = P-th percentile; ``"topk:N"``: t = (N+1)-th largest
        value, so at most N pixels; ``"otsu"``: Otsu's threshold of the values; a
        number: t in map units.
    sign : {"positive", "absolute", "signed"}
        Treatment of negative relevance, applied before everything else.
        ``"positive"`` (default) clips at zero: relevance mass and rank accuracy are
        defined on positive evidence in CLEVR-XAI and Quantus, and document 003's
        thresholded intensity (the red channel of a rendered heatmap) shows positive
        relevance only; so "mean" is the mean of the clipped map, zeros included.
        ``"absolute"`` uses ``|R|`` (methods whose sign carries no meaning, e.g.
        |Gradient|, SmoothGrad). ``"signed"`` keeps the raw values: thresholds apply
        to signed values and `relevance_mass` becomes a net share that can leave
        [0, 1] (a region with negative evidence gets a negative mass).
    transform : RoiTransform or dict, optional
        The map's ROI transform (``RoiTransform`` or its ``as_dict()``) when the map
        was computed on a ROI of the labelled image. The labels are then sampled onto
        the map's grid by nearest neighbour at each ROI pixel centre (ROI pixels
        outside the image get 0 = not labelled), so every relevance value is used once,
        unchanged. ``labels.shape`` must equal the transform's ``image_shape``.
    resample : {None, "labels", "map"}
        Without a transform, for maps and labels covering the same field at different
        sizes: ``"labels"`` samples the labels onto the map grid by nearest pixel
        centre (relevance untouched; recommended); ``"map"`` resizes the map onto the
        label grid by bilinear interpolation. ``None`` (default) raises
        `QuantifyError` naming both shapes.

    Returns
    -------
    pandas.DataFrame
        One row per non-zero label value present, sorted by value, with columns

        * ``label``, ``name``;
        * ``pixels`` — label area (pixels of the map grid), ``area_fraction`` — its
          share of the map;
        * ``relevant_pixels`` — relevant pixels inside the label;
        * ``relevant_fraction`` — their share of all relevant pixels of the map
          (document 003's percentage);
        * ``relevance_mass`` — share of the (sign-handled) relevance sum inside the
          label: CLEVR-XAI / Quantus *relevance mass accuracy*;
        * ``relevance_density`` — ``relevance_mass / area_fraction``: 1 means as
          much relevance as a uniform map would give, so large regions are not
          favoured;
        * ``rank_accuracy`` — with K = ``pixels``, the share of the K most relevant
          pixels that lie in the label (CLEVR-XAI *relevance rank accuracy*); pixels
          tied at the K-th value count in proportion (expected value under random
          tie-breaking);
        * ``pointing_game`` — the maximum of the map lies in the label (with ties, any
          maximal pixel counts, as in Quantus);
        * ``defined`` — False for a constant or all-zero map, with a `QuantifyWarning`.
          Nothing is NaN: a constant map gives mass = rank accuracy = area share,
          density 1 and no pointing-game hit; an all-zero map gives 0 throughout.

        ``DataFrame.attrs`` records ``threshold`` (value), ``threshold_rule``,
        ``sign``, ``relevant_pixels_total``, ``map_shape`` and
        ``unlabelled_relevance_mass``.

    Raises
    ------
    QuantifyError
        For a map that is not 2-D numeric or holds NaN/inf, labels of a float or
        negative dtype, mismatched shapes without a transform or resample rule, a
        transform from another image, or an unknown threshold / sign.

    Warns
    -----
    QuantifyWarning
        Empty labels (an empty table is returned) or an undefined (constant) map.
    """
    sign = _check_sign(sign)
    try:
        names = _label_names(None, label_names)
    except LabelsError as exc:
        raise QuantifyError(str(exc)) from None
    raw = _check_map(relevance)
    lab = _check_label_image(labels)
    raw, lab = _align(raw, lab, transform, resample)
    values = _signed_map(raw, sign)
    scaled = _unit_map(values)
    relevant, t, rule = _threshold(values, threshold, scaled)

    flat_lab = lab.ravel()
    bin_values, counts, index = _label_counts(flat_lab)
    present = np.flatnonzero((counts > 0) & (bin_values != 0))
    attrs = {
        "threshold": t,
        "threshold_rule": rule,
        "sign": sign,
        "map_shape": tuple(values.shape),
        "relevant_pixels_total": 0,
        "unlabelled_relevance_mass": 0.0,
    }
    if present.size == 0:
        warnings.warn(
            "The labels are empty (no pixel has a value other than 0): nothing to "
            "quantify. Paint at least one region, or use suggest_labels for a draft.",
            QuantifyWarning,
            stacklevel=2,
        )
        return _empty_table(attrs)

    label_values = bin_values[present].astype(np.int64)
    label_text = [names.get(int(v), f"label {int(v)}") for v in label_values]
    flat = values.ravel()
    n_total = flat.size
    pixels = counts[present]
    area = pixels / n_total
    relevant = relevant.ravel()
    n_relevant = int(relevant.sum())
    attrs["relevant_pixels_total"] = n_relevant
    rel_in = np.bincount(index[relevant], minlength=counts.size)[present]

    vmax, vmin = float(flat.max()), float(flat.min())
    unit = scaled[0].ravel()  # exactly scaled: the sums cannot overflow
    mass_all = np.bincount(index, weights=unit, minlength=counts.size)
    total = float(mass_all.sum())
    # a net sum within the rounding error of the sum itself (n·ε·Σ|r|) is zero: + and −
    # cancel, and dividing by what is left would give meaningless, even infinite, shares
    cancelled = abs(total) <= unit.size * np.finfo(np.float64).eps * float(np.abs(unit).sum())
    zeros = np.zeros(present.size)
    defined = vmax != vmin and not cancelled
    if cancelled:
        reason = "all zero" if vmax == vmin else "of zero net sum (+ and - cancel)"
        mass = density = rank = zeros
    else:
        mass = mass_all[present] / total
        density = mass / area
        rank = _rank_accuracy(flat, index, present, pixels, counts.size)
        if vmax == vmin:
            reason = "constant"
    if not defined:
        if sign == "positive" and vmax == vmin == 0.0 and float(raw.min()) < 0.0:
            reason += " after clipping negative values (sign='positive')"
        warnings.warn(
            f"The relevance map is {reason}: its localisation is undefined, so the rows "
            "are marked defined=False (relevance mass then equals the area share, or 0 "
            "for an all-zero map; the pointing game is False). Deep Taylor and some LRP "
            "rules give all-zero maps when no positive evidence reaches the input.",
            QuantifyWarning,
            stacklevel=2,
        )
    elif n_relevant == 0:
        warnings.warn(
            f"No pixel of the map is above the threshold ({rule}: {t:g}); "
            "relevant_fraction is 0 for every label. Use a lower threshold.",
            QuantifyWarning,
            stacklevel=2,
        )
    if defined:
        hits = np.zeros(counts.size, bool)
        hits[np.unique(index[flat == vmax])] = True
        pointing = hits[present]
    else:
        pointing = np.zeros(present.size, bool)
    unlabelled = (bin_values == 0) & (counts > 0)
    if not cancelled:
        attrs["unlabelled_relevance_mass"] = float(mass_all[unlabelled].sum() / total)
    table = pd.DataFrame(
        {
            "label": label_values,
            "name": label_text,
            "pixels": pixels.astype(np.int64),
            "area_fraction": area,
            "relevant_pixels": rel_in.astype(np.int64),
            "relevant_fraction": rel_in / n_relevant if n_relevant else zeros,
            "relevance_mass": mass,
            "relevance_density": density,
            "rank_accuracy": rank,
            "pointing_game": pointing,
            "defined": np.full(present.size, defined),
        }
    )
    table.attrs.update(attrs)
    return table


def _label_counts(flat_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label value of each bin, pixel count per bin, bin index of each pixel).

    Small label values are their own bins (fast ``bincount``); large ones are compacted.
    """
    top = int(flat_lab.max()) if flat_lab.size else 0
    if top <= max(1 << 16, flat_lab.size):
        index = flat_lab.astype(np.intp, copy=False)
        counts = np.bincount(index, minlength=top + 1)
        return np.arange(top + 1), counts, index
    values, index = np.unique(flat_lab, return_inverse=True)
    return values, np.bincount(index, minlength=values.size), index.ravel()


#: Above this many distinct label sizes, one sort of the map is cheaper than a count per size.
_SORT_ABOVE_SIZES = 64


def _rank_accuracy(flat, index, present, pixels, n_bins) -> np.ndarray:
    """Share of the K most relevant pixels inside each label (K = label area), ties shared."""
    n = flat.size
    kth = np.unique(n - pixels)
    if kth.size > _SORT_ABOVE_SIZES:
        ordered = np.sort(flat)  # one pass serves every label size (issue 14 #21)
        v_k = ordered[n - pixels]  # K-th largest value per label
        above_all = n - np.searchsorted(ordered, v_k, side="right")
        tied_all = n - above_all - np.searchsorted(ordered, v_k, side="left")
    else:
        v_k = np.partition(flat, kth)[n - pixels]
        above_all = np.empty(v_k.size)
        tied_all = np.empty(v_k.size)
        for value in np.unique(v_k):
            at = v_k == value
            above_all[at] = np.count_nonzero(flat > value)
            tied_all[at] = np.count_nonzero(flat == value)
    thr = np.zeros(n_bins)
    thr[present] = v_k
    px_thr = thr[index]
    above_in = np.bincount(index[flat > px_thr], minlength=n_bins)[present]
    tied_in = np.bincount(index[flat == px_thr], minlength=n_bins)[present]
    share = np.where(tied_all > 0, tied_in / np.maximum(tied_all, 1), 0.0)
    return (above_in + (pixels - above_all) * share) / pixels


def _empty_table(attrs: dict) -> pd.DataFrame:
    dtypes = {
        "label": "int64",
        "name": "object",
        "pixels": "int64",
        "area_fraction": "float64",
        "relevant_pixels": "int64",
        "relevant_fraction": "float64",
        "relevance_mass": "float64",
        "relevance_density": "float64",
        "rank_accuracy": "float64",
        "pointing_game": "bool",
        "defined": "bool",
    }
    table = pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})
    table.attrs.update(attrs)
    return table


# --------------------------------------------------------------------------- many maps

_ITEM_DATA_KEYS = ("relevance", "labels", "transform", "label_names")


def quantify_many(
    items: Iterable[Mapping],
    threshold="mean",
    *,
    sign: str = "positive",
    label_names: Mapping[int, str] | None = None,
    resample: str | None = None,
) -> pd.DataFrame:
    """Quantify many maps (methods × images × models) into one tidy long table.

    Parameters
    ----------
    items : iterable of mappings
        Each holds ``relevance`` and ``labels`` (and optionally ``transform`` and
        ``label_names``) as for :func:`quantify`; every other key with a scalar value
        (e.g. ``method``, ``image``, ``model``, ``target``) becomes an id column.
    threshold, sign, label_names, resample
        As for :func:`quantify`; an item's own ``label_names`` wins.

    Returns
    -------
    pandas.DataFrame
        The id columns, then the columns of :func:`quantify`; one row per item and
        label. Items with empty labels contribute no rows.

    Warns
    -----
    QuantifyWarning
        One summary warning naming the items whose maps were undefined or whose labels
        were empty.
    """
    tables = []
    id_order: list[str] = []
    undefined, empty = [], []
    options = {"threshold": threshold, "sign": sign, "resample": resample}
    for i, item in enumerate(items):
        ids = _item_ids(i, item)
        id_order.extend(k for k in ids if k not in id_order)
        label = ", ".join(f"{k}={v}" for k, v in ids.items()) or f"item {i}"
        table = _quantify_item(item, label, label_names, options)
        if table.empty:
            empty.append(label)
            continue
        if not table["defined"].all():
            undefined.append(label)
        for key, value in ids.items():
            table[key] = value
        tables.append(table)
    _warn_skipped(undefined, empty)
    if not tables:
        table = _empty_table({})
        for key in reversed(id_order):
            table.insert(0, key, pd.Series(dtype="object"))
        return table
    long = pd.concat(tables, ignore_index=True)
    long.attrs = {"threshold_rule": str(threshold), "sign": sign}
    return long[id_order + [c for c in COLUMNS]]


def _item_ids(i: int, item) -> dict:
    """An item's id columns (its scalar keys other than the data), checked."""
    if not isinstance(item, Mapping):
        raise QuantifyError(f"Item {i} is a {type(item).__name__}; each item must be a dict.")
    missing = [k for k in ("relevance", "labels") if k not in item]
    if missing:
        raise QuantifyError(f"Item {i} lacks {missing}; each item needs relevance and labels.")
    ids = {k: v for k, v in item.items() if k not in _ITEM_DATA_KEYS}
    clashes = sorted(set(ids) & set(COLUMNS))
    if clashes:
        raise QuantifyError(
            f"Item {i}: the key(s) {clashes} are result columns of quantify and would be "
            "overwritten; rename them (e.g. 'region_name' instead of 'name')."
        )
    for key, value in ids.items():
        if not (value is None or np.isscalar(value)):
            raise QuantifyError(
                f"Item {i}: id column {key!r} holds a {type(value).__name__}; id values "
                "must be scalars (str, int, float)."
            )
    return ids


def _quantify_quietly(*args, **kwargs) -> tuple[pd.DataFrame, list[str]]:
    """`quantify`, with its QuantifyWarnings returned as texts instead of shown.

    Other warnings pass through unchanged. Callers that quantify many maps report the
    held-back texts once, together.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QuantifyWarning)
        table = quantify(*args, **kwargs)
    held = []
    for w in caught:
        if issubclass(w.category, QuantifyWarning):
            held.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return table, held


def _quantify_item(item, label: str, label_names, options: dict) -> pd.DataFrame:
    """`quantify` of one item; its QuantifyWarnings are held back for one summary."""
    try:
        table, _ = _quantify_quietly(
            item["relevance"],
            item["labels"],
            item.get("label_names", label_names),
            options["threshold"],
            sign=options["sign"],
            transform=item.get("transform"),
            resample=options["resample"],
        )
    except QuantifyError as exc:
        raise QuantifyError(f"{label}: {exc}") from exc
    return table


def quantify_maps(
    maps: Mapping[str, tuple[np.ndarray, Any]],
    labels: np.ndarray,
    names: Mapping[int, str] | None = None,
    threshold="mean",
    sign: str = "positive",
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Several named maps against one label image, never raising for one bad map.

    What the Relevance overlap widget shows; usable from the console as well.

    Parameters
    ----------
    maps : mapping of map name → (2-D map, ROI transform or None)
        A map with the labels' shape is quantified as it is; any other map needs the
        transform that places it on the labels (a map on the ROI grid).
    labels, names, threshold, sign : as for :func:`quantify`.

    Returns
    -------
    table : pandas.DataFrame
        A ``map`` column then the columns of :func:`quantify`; empty (with those
        columns) for empty labels or when every map failed.
    notes : list of str
        Undefined maps, empty labels, no pixel above the threshold.
    errors : list of str
        Maps that could not be quantified (NaN/inf, wrong shape, …), one message each.
    """
    lab = np.asarray(labels)
    if lab.size == 0 or not np.any(lab):
        note = (
            "The labels are empty (no pixel has a value other than 0): nothing to "
            "quantify. Paint at least one region, or use Suggest labels for a draft."
        )
        return empty_maps_table(), [note], []
    notes, errors, tables = [], [], []
    for name, (relevance, transform) in maps.items():
        on_labels = np.shape(relevance)[:2] == np.shape(lab)
        try:
            table, held = _quantify_quietly(
                relevance, lab, names or None, threshold, sign=sign,
                transform=None if on_labels else transform,
            )  # fmt: skip
        except QuantifyError as exc:
            errors.append(f"'{name}': {exc}")
            continue
        notes += [_named_note(name, text) for text in held]
        table.insert(0, "map", name)
        tables.append(table)
    if not tables:
        return empty_maps_table(), notes, errors
    out = pd.concat(tables, ignore_index=True)
    out.attrs = {"threshold_rule": str(threshold), "sign": sign}
    return out, notes, errors


def _named_note(name: str, text: str) -> str:
    return f"'{name}' is undefined: {text}" if "undefined" in text else f"'{name}': {text}"


def empty_maps_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in ("map", *COLUMNS)})


def _warn_skipped(undefined: list, empty: list) -> None:
    """One warning naming the items with undefined maps or empty labels."""
    parts = []
    if undefined:
        parts.append(f"{len(undefined)} undefined (constant) maps: {_short(undefined)}")
    if empty:
        parts.append(f"{len(empty)} empty label images: {_short(empty)}")
    if parts:
        warnings.warn("; ".join(parts) + ".", QuantifyWarning, stacklevel=3)


def _short(names: Sequence[str], limit: int = 5) -> str:
    shown = "; ".join(names[:limit])
    return shown + (f"; ... ({len(names) - limit} more)" if len(names) > limit else "")


def summarize(
    table: pd.DataFrame,
    by: Sequence[str] | str = ("method", "label"),
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """Mean ± sd of each metric per group (e.g. method × label), over defined maps.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`quantify_many` (or :func:`quantify` with id columns added).
    by : str or sequence of str
        Grouping columns; ``label`` is always added (and ``name`` carried along) so
        that regions are never mixed.
    metrics : sequence of str
        Metric columns to summarise; ``pointing_game`` gives the hit rate.

    Returns
    -------
    pandas.DataFrame
        The grouping columns, ``name``, ``n`` (defined maps), ``n_undefined``, and
        ``<metric>_mean`` / ``<metric>_sd`` (sample sd, ddof=1; 0 when n < 2). Groups
        with no defined map have n = 0 and means 0, so nothing is NaN.
    """
    by = [by] if isinstance(by, str) else list(by)
    if "label" not in by:
        by.append("label")
    missing = [c for c in [*by, "defined", *metrics] if c not in table.columns]
    if missing:
        raise QuantifyError(
            f"The table lacks columns {missing}; summarize expects quantify_many output "
            f"(columns: {list(table.columns)})."
        )
    data = table.copy()
    data["pointing_game"] = data["pointing_game"].astype(float)
    rows = []
    for key, group in data.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = group[group["defined"].astype(bool)]
        row = dict(zip(by, key, strict=True))
        row["name"] = group["name"].iloc[0] if "name" in group else ""
        row["n"] = len(ok)
        row["n_undefined"] = len(group) - len(ok)
        for m in metrics:
            vals = ok[m].astype(float)
            row[f"{m}_mean"] = float(vals.mean()) if len(vals) else 0.0
            row[f"{m}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    columns = [*by, "name", "n", "n_undefined"] + [
        f"{m}_{s}" for m in metrics for s in ("mean", "sd")
    ]
    return pd.DataFrame(rows, columns=columns)


make_callable(__name__)  # nl.quantify(...) works in any import order
