"""Readable figures of the demo's results: numpy arrays in, RGB PNG files out.

Pure matplotlib. Every figure is drawn on its own Agg canvas (``FigureCanvasAgg``), never
through ``pyplot``, so the global backend of a running napari/Qt session is left alone;
no Qt or napari import happens here. :mod:`napari_leukemia.demo` imports this module
only when it writes figures, so importing the plugin does not import matplotlib.

Colours
-------
* Signed attribution maps (values for and against the class): the diverging ``BrBG``
  colormap with limits symmetric around 0, so 0 is the neutral middle (teal = for the
  explained class, brown = against it). Blue/red diverging maps are avoided on purpose:
  on Romanowsky-stained smears blue is the nuclear stain and red sits on the pink red
  cells, so such a map would be confused with the stain.
* Non-negative maps (Grad-CAM): the sequential ``inferno`` colormap from 0.
* Morphology labels: the colours and names of :mod:`napari_leukemia.labels`.

A map is drawn over the grey version of the explained cell's ROI; its opacity grows with
the magnitude of the value, so weak relevance lets the cell show through. Colour limits
stop at the 99.5th percentile of the absolute values, so a few extreme pixels do not wash
the rest out; the colour bar's pointed ends stand for the clipped values beyond.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .labels import MORPHOLOGY_CLASSES, MORPHOLOGY_COLORS

SIGNED_CMAP = "BrBG"
POSITIVE_CMAP = "inferno"
#: Colour of unknown label values and of "not labelled" (0).
UNKNOWN_LABEL_COLOR = (0.5, 0.5, 0.5)
BOX_COLOR = "#ffe000"

__all__ = [
    "ChainSummary",
    "MapView",
    "colour_labels",
    "map_norm",
    "render_labels_figure",
    "render_map_figure",
    "render_summary",
]


@dataclass(frozen=True)
class MapView:
    """One attribution map with what a reader needs to know about it.

    `relevance` is the map on the image's pixel grid; `window` is the explained ROI,
    (top, left, bottom, right) in image pixels (it may reach past the image edge).
    """

    relevance: np.ndarray
    method: str
    method_label: str
    target_name: str
    signed: bool
    window: tuple[int, int, int, int]
    cell_name: str = "cell 1"

    @property
    def title(self) -> str:
        """Method, explained class and cell, e.g. ``"LRP-ε · target Pre-B · cell 1"``."""
        return f"{self.method_label} · target {self.target_name} · {self.cell_name}"


@dataclass(frozen=True)
class ChainSummary:
    """Everything the one-page summary shows, from the smear to the relevance table.

    `relevance_table` is the long table of :func:`napari_leukemia.quantify.quantify_many`
    (columns ``method``, ``label``, ``relevant_fraction`` are used).
    """

    smear: np.ndarray
    preprocessed: np.ndarray
    cell_bboxes: Sequence[tuple[int, int, int, int]]
    roi: np.ndarray
    probabilities: Mapping[str, float]
    call: str
    views: Sequence[MapView]
    relevance_table: object


# --------------------------------------------------------------------------- helpers


def _new_figure(width: float, height: float) -> Figure:
    """A figure of `width` × `height` inches on its own Agg canvas, constrained layout."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_rgb(figure: Figure, path: Path, dpi: int = 110) -> Path:
    """Write `figure` as an 8-bit RGB PNG on white (matplotlib alone writes RGBA)."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as rendered:
        rendered.convert("RGB").save(path, format="PNG")
    return Path(path)


def _gray(image: np.ndarray) -> np.ndarray:
    """Luminance in [0, 1] of a gray or RGB image of any dtype, as the map's backdrop."""
    array = np.asarray(image, dtype=np.float64)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        array = array / np.iinfo(np.asarray(image).dtype).max
    if array.ndim == 3:
        array = array[..., :3] @ np.array([0.2126, 0.7152, 0.0722])
    return np.clip(array, 0.0, 1.0)


def _zoom(ax, window: tuple[int, int, int, int]) -> None:
    """Show only the image pixels inside `window` (imshow pixel edges sit at ±0.5)."""
    top, left, bottom, right = window
    ax.set_xlim(left - 0.5, right - 0.5)
    ax.set_ylim(bottom - 0.5, top - 0.5)


def _bare(ax, title: str) -> None:
    """Title an image panel and drop its ticks (pixel positions mean nothing here)."""
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------- maps


def map_norm(relevance: np.ndarray, signed: bool) -> Normalize:
    """Colour limits: symmetric around 0 for signed maps, from 0 for non-negative ones.

    The limit is the 99.5th percentile of |value| over non-zero pixels (the map is 0
    outside the ROI, which must not pull the limit down); an all-zero map gets ±1.
    """
    values = np.abs(relevance[relevance != 0])
    top = float(np.percentile(values, 99.5)) if values.size else 0.0
    top = top if top > 0 else 1.0
    return Normalize(vmin=-top if signed else 0.0, vmax=top)


def _overlay(relevance: np.ndarray, norm: Normalize, cmap_name: str) -> np.ndarray:
    """RGBA of the map whose opacity rises with |value|, so weak relevance shows the cell.

    Non-negative maps (CAMs) are smooth and high almost everywhere, so their opacity stops
    lower than that of signed maps, to keep the cell's outline visible through them.
    """
    rgba = colormaps[cmap_name](norm(relevance))
    strength = np.clip(np.abs(relevance) / norm.vmax, 0.0, 1.0)
    rgba[..., 3] = (0.92 if norm.vmin < 0 else 0.72) * np.sqrt(strength)
    return rgba


def draw_map(ax, image: np.ndarray, view: MapView, title: str | None = None) -> ScalarMappable:
    """Draw `view` over the grey image, zoomed to its ROI; return it for a colour bar."""
    cmap_name = SIGNED_CMAP if view.signed else POSITIVE_CMAP
    norm = map_norm(view.relevance, view.signed)
    ax.imshow(_gray(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(_overlay(view.relevance, norm, cmap_name), interpolation="nearest")
    _zoom(ax, view.window)
    _bare(ax, view.title if title is None else title)
    return ScalarMappable(norm=norm, cmap=cmap_name)


def _colorbar(figure: Figure, mappable: ScalarMappable, ax, signed: bool) -> None:
    """Colour bar next to `ax`, labelled with what the sign of a value means."""
    label = "relevance  (− against · + for the class)" if signed else "relevance (≥ 0)"
    bar = figure.colorbar(mappable, ax=ax, shrink=0.85, extend="both" if signed else "max")
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def render_map_figure(path: Path, image: np.ndarray, view: MapView) -> Path:
    """The explained cell's ROI beside the map drawn over it, with a colour bar."""
    figure = _new_figure(8.4, 4.2)
    figure.suptitle(view.title, fontsize=12)
    ax_roi, ax_map = figure.subplots(1, 2)
    ax_roi.imshow(image, interpolation="nearest")
    _zoom(ax_roi, view.window)
    _bare(ax_roi, f"{view.cell_name}: ROI of the smear")
    mappable = draw_map(ax_map, image, view, title="map over the ROI (grey)")
    _colorbar(figure, mappable, ax_map, view.signed)
    return _save_rgb(figure, path)


# --------------------------------------------------------------------------- labels


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 RGB image of a label image in the morphology colours (others grey)."""
    values = np.asarray(labels)
    rgb = np.empty(values.shape + (3,), dtype=np.float64)
    rgb[...] = UNKNOWN_LABEL_COLOR
    for code, rgba in MORPHOLOGY_COLORS.items():
        rgb[values == code] = rgba[:3]
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def _label_handles(codes: Sequence[int] | None = None) -> list[Patch]:
    """Legend entries (colour patch + "code name") for the morphology classes."""
    codes = list(MORPHOLOGY_CLASSES) if codes is None else list(codes)
    return [
        Patch(
            facecolor=MORPHOLOGY_COLORS.get(code, UNKNOWN_LABEL_COLOR),
            edgecolor="black",
            linewidth=0.5,
            label=f"{code} {MORPHOLOGY_CLASSES.get(code, 'unknown')}",
        )
        for code in codes
    ]


def render_labels_figure(path: Path, image: np.ndarray, labels: np.ndarray) -> Path:
    """The smear beside its labels in morphology colours, with a legend of the classes."""
    figure = _new_figure(9.0, 4.0)
    ax_image, ax_labels = figure.subplots(1, 2)
    ax_image.imshow(image, interpolation="nearest")
    _bare(ax_image, "smear")
    ax_labels.imshow(colour_labels(labels), interpolation="nearest")
    _bare(ax_labels, "morphology labels (exact truth)")
    present = [int(v) for v in np.unique(labels) if v != 0]
    ax_labels.legend(
        handles=_label_handles(present),
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        frameon=False,
        fontsize=9,
    )
    return _save_rgb(figure, path)


# --------------------------------------------------------------------------- summary


def draw_cells(ax, image: np.ndarray, bboxes, title: str) -> None:
    """The smear with each detected cell's box and its number (1 = most confident)."""
    ax.imshow(image, interpolation="nearest")
    for number, (r0, c0, r1, c1) in enumerate(bboxes, start=1):
        box = Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, lw=1.5)
        box.set_edgecolor(BOX_COLOR)
        ax.add_patch(box)
        ax.text(
            c0,
            r0 - 2,
            str(number),
            color="black",
            fontsize=9,
            fontweight="bold",
            va="bottom",
            bbox={"facecolor": BOX_COLOR, "edgecolor": "none", "pad": 1.5},
        )
    _bare(ax, title)


def draw_probabilities(ax, probabilities: Mapping[str, float], title: str) -> None:
    """Horizontal bars of the class probabilities, the called class highlighted."""
    names = list(probabilities)
    values = [float(probabilities[n]) for n in names]
    best = int(np.argmax(values))
    colours = ["#5a5a5a"] * len(names)
    colours[best] = "#1b9e77"
    ax.barh(names, values, color=colours)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.18)
    for row, value in enumerate(values):
        ax.text(value + 0.02, row, f"{value:.2f}", va="center", fontsize=8)
    ax.set_xlabel("probability", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=10)


def _text_colour_on(rgb) -> str:
    """Black or white, whichever reads better on a patch of colour `rgb`."""
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "black" if luminance > 0.45 else "white"


def draw_relevance_shares(ax, table, views: Sequence[MapView]) -> None:
    """One stacked bar per map: share of its relevant pixels in each label class."""
    methods = [v.method for v in views]
    codes = sorted({int(c) for c in table["label"]})
    left = np.zeros(len(methods))
    for code in codes:
        rows = table[table["label"] == code].set_index("method")["relevant_fraction"]
        share = np.array([float(rows.get(m, 0.0)) for m in methods])
        colour = MORPHOLOGY_COLORS.get(code, UNKNOWN_LABEL_COLOR)
        ax.barh(range(len(methods)), share, left=left, color=colour, edgecolor="black", lw=0.4)
        for row in np.flatnonzero(share >= 0.08):  # write the percentage where it fits
            ax.text(
                left[row] + share[row] / 2,
                row,
                f"{share[row]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color=_text_colour_on(colour),
            )
        left += share
    ax.set_yticks(range(len(methods)), [v.method_label for v in views], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of relevant pixels (value > map mean)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("where the relevant pixels fall", fontsize=10)
    ax.legend(
        handles=_label_handles(codes),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        frameon=False,
        fontsize=7,
    )


def _summary_axes(figure: Figure, n_maps: int) -> dict:
    """Two rows: the chain up to the call on top, the maps and their overlap below."""
    columns = max(4, n_maps + 1)
    top = ["smear", "pre", "roi", "probs"] + ["."] * (columns - 4)
    bottom = [f"map{i}" for i in range(n_maps)] + ["shares"] + ["."] * (columns - n_maps - 1)
    return figure.subplot_mosaic([top, bottom])


def render_summary(path: Path, chain: ChainSummary) -> Path:
    """The whole chain on one page: cells, preprocessing, ROI, call, maps, overlap."""
    n_maps = len(chain.views)
    figure = _new_figure(4.0 * max(4, n_maps + 1), 8.6)
    axes = _summary_axes(figure, n_maps)
    figure.suptitle("napari-leukemia demo: from the smear to the relevance", fontsize=13)
    draw_cells(axes["smear"], chain.smear, chain.cell_bboxes, "1  detected cells (numbered)")
    axes["pre"].imshow(chain.preprocessed, cmap="gray", vmin=0, vmax=1)
    _bare(axes["pre"], "2  preprocessed (document 000)")
    axes["roi"].imshow(chain.roi, interpolation="nearest")
    _bare(axes["roi"], "3  ROI of cell 1")
    draw_probabilities(axes["probs"], chain.probabilities, f"4  cell 1 call: {chain.call}")
    for i, view in enumerate(chain.views):
        ax = axes[f"map{i}"]
        title = f"{5 + i}  {view.method_label} · target {view.target_name}"
        _colorbar(figure, draw_map(ax, chain.smear, view, title=title), ax, view.signed)
    draw_relevance_shares(axes["shares"], chain.relevance_table, chain.views)
    return _save_rgb(figure, path, dpi=100)
