"""The selected cell: the one place that knows which cell later widgets work on.

Detected cells live in a Shapes layer of rectangles (one per cell) that the user may
move, resize, delete or add to. Its ``features`` table has a ``cell`` id, a ``score``
and a boolean ``selected`` column; exactly one row is selected at a time. The layer's
``metadata["napari_leukemia"]`` names the image layer the cells were found on.
Selecting a shape with napari's select tool, or clicking inside a cell on the image,
makes it the selected cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from psygnal import Signal

from ..images import as_rgb
from ..layer_metadata import CELLS as CELLS_KIND
from ..layer_metadata import PLUGIN_KEY, kind_of

# Colours that stand out on Romanowsky-stained smears (pale background, pink red cells,
# purple nuclei): the selected box in orange, the others in a dark teal.
SELECTED_EDGE = "#ff7f0e"
OTHER_EDGE = "#00a0a0"
LABEL_ON_LIGHT = "black"
LABEL_ON_DARK = "white"
LABEL_PATCH = 6  # px around a box's corner whose brightness picks the number's colour


class _SelectionEvents:
    """Emits the cells layer whose selected cell changed, for widgets to refresh."""

    changed = Signal(object)


selection_events = _SelectionEvents()


def on_selection_changed(widget, callback) -> None:
    """Call `callback(cells_layer)` on selection changes until `widget` is destroyed."""
    selection_events.changed.connect(callback)
    widget.native.destroyed.connect(lambda *_: selection_events.changed.disconnect(callback))


@dataclass(frozen=True)
class SelectedCell:
    """A cell chosen by the user: its layers, row in the cells table and bbox."""

    image_layer: object
    cells_layer: object
    index: int
    cell_id: int
    bbox: tuple[int, int, int, int]

    @property
    def label(self) -> str:
        return f"cell {self.cell_id}"


def bbox_to_rectangle(bbox) -> np.ndarray:
    """Rectangle corners for napari whose edges lie on the bbox's pixel borders."""
    min_row, min_col, max_row, max_col = bbox
    top, left, bottom, right = min_row - 0.5, min_col - 0.5, max_row - 0.5, max_col - 0.5
    return np.array([[top, left], [top, right], [bottom, right], [bottom, left]], float)


def rectangle_to_bbox(corners: np.ndarray, image_shape) -> tuple[int, int, int, int]:
    """Inverse of `bbox_to_rectangle`, clipped to the image."""
    corners = np.asarray(corners, float)[:, -2:]
    min_row, min_col = np.round(corners.min(axis=0) + 0.5).astype(int)
    max_row, max_col = np.round(corners.max(axis=0) + 0.5).astype(int)
    rows, cols = image_shape[:2]
    return (
        int(np.clip(min_row, 0, rows - 1)),
        int(np.clip(min_col, 0, cols - 1)),
        int(np.clip(max_row, min_row + 1, rows)),
        int(np.clip(max_col, min_col + 1, cols)),
    )


def is_cells_layer(layer) -> bool:
    return kind_of(layer) == CELLS_KIND


def label_colors(image, bboxes) -> list[str]:
    """Black or white per cell number, whichever stands out from the smear under it.

    The number sits at the box's upper-left corner; its colour follows the mean
    luminance of the pixels there, so it reads on pale and on dark smears alike.
    """
    if image is None:
        return [LABEL_ON_LIGHT] * len(bboxes)
    rgb = as_rgb(image)
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    colors = []
    for min_row, min_col, _, _ in bboxes:
        top, left = max(int(min_row) - LABEL_PATCH, 0), max(int(min_col) - LABEL_PATCH, 0)
        patch = luminance[top : top + 2 * LABEL_PATCH, left : left + 3 * LABEL_PATCH]
        light = patch.size == 0 or float(patch.mean()) >= 0.5
        colors.append(LABEL_ON_LIGHT if light else LABEL_ON_DARK)
    return colors


def cells_layer_data(cells, image_layer_name: str, image=None) -> tuple:
    """napari LayerData tuple for detected cells (a list of `Cell`).

    With the `image` the cells were found on, each cell number is drawn in the colour
    that reads best on the smear under it (`label_colors`).
    """
    rectangles = [bbox_to_rectangle(cell.bbox) for cell in cells]
    features = pd.DataFrame(
        {
            "cell": np.arange(1, len(cells) + 1, dtype=int),
            "score": [round(float(cell.score), 3) for cell in cells],
            "selected": np.zeros(len(cells), dtype=bool),
        }
    )
    if len(cells):
        features.loc[0, "selected"] = True
    kwargs = {
        "name": f"cells · {image_layer_name}",
        "shape_type": "rectangle",
        "edge_width": 2,
        "edge_color": [SELECTED_EDGE if s else OTHER_EDGE for s in features["selected"]],
        "face_color": "transparent",
        "features": features,
        # shapes the user draws get id 0 (a fresh id is given when needed), no score
        "feature_defaults": {"cell": 0, "score": np.nan, "selected": False},
        "text": {
            "string": "{cell}",
            "color": {
                "array": label_colors(image, [cell.bbox for cell in cells]),
                "default": LABEL_ON_LIGHT,
            },
            "size": 11,
            "anchor": "upper_left",
        },
        "metadata": {PLUGIN_KEY: {"kind": CELLS_KIND, "image_layer": image_layer_name}},
    }
    return rectangles, kwargs, "shapes"


def select_cell(cells_layer, index: int) -> None:
    """Make row `index` of a cells layer the selected cell and highlight it."""
    features = cells_layer.features
    if not 0 <= index < len(features):
        raise IndexError(f"There is no cell at row {index}; the layer has {len(features)}.")
    if "cell" not in features:
        features["cell"] = np.arange(1, len(features) + 1)
    features["cell"] = cell_ids_from(features["cell"])
    features["selected"] = np.arange(len(features)) == index
    cells_layer.features = features
    cells_layer.edge_color = [SELECTED_EDGE if s else OTHER_EDGE for s in features["selected"]]
    cells_layer.refresh()
    selection_events.changed.emit(cells_layer)


def cell_ids_from(ids: pd.Series) -> np.ndarray:
    """Cell ids; shapes the user drew by hand (no id yet) get fresh ids after the largest."""
    values = pd.to_numeric(ids, errors="coerce").to_numpy(dtype=float)
    next_id = int(np.nanmax(values)) + 1 if np.isfinite(values).any() else 1
    # napari copies the last selected shape's features into a new shape, so a
    # repeated id also marks a hand-drawn shape: later repeats get fresh ids
    repeated = pd.Series(values).duplicated().to_numpy()
    for i in np.flatnonzero(~np.isfinite(values) | (values <= 0) | repeated):
        values[i] = next_id
        next_id += 1
    return values.astype(int)


def cell_at(cells_layer, point) -> int | None:
    """Row of the smallest cell whose rectangle contains `point` (data coords)."""
    row, col = np.asarray(point, float)[-2:]
    best, best_area = None, np.inf
    for i, corners in enumerate(cells_layer.data):
        corners = np.asarray(corners)[:, -2:]
        (top, left), (bottom, right) = corners.min(axis=0), corners.max(axis=0)
        if top <= row <= bottom and left <= col <= right:
            area = (bottom - top) * (right - left)
            if area < best_area:
                best, best_area = i, area
    return best


def unedited_cells_layers(viewer, image_layer_name: str) -> list:
    """The plugin's cells layers for an image that the user has not edited."""
    return [
        layer
        for layer in viewer.layers
        if is_cells_layer(layer)
        and layer.metadata[PLUGIN_KEY].get("image_layer") == image_layer_name
        and not layer.metadata[PLUGIN_KEY].get("edited", False)
    ]


def find_cells_layer(viewer, image_layer=None):
    """The cells layer to use for `image_layer`.

    The active cells layer when it was made for that image (or no image is given),
    else the last one made for the image; with no image given, the last one. A cells
    layer of *another* image is never used for this one: its boxes would cut the
    wrong pixels.
    """
    candidates = [layer for layer in viewer.layers if is_cells_layer(layer)]
    if image_layer is not None:
        candidates = [
            layer
            for layer in candidates
            if layer.metadata[PLUGIN_KEY].get("image_layer") == image_layer.name
        ]
    active = viewer.layers.selection.active
    if active is not None and any(active is layer for layer in candidates):
        return active
    return candidates[-1] if candidates else None


def selected_cell(viewer, image_layer=None) -> SelectedCell | None:
    """The selected cell, or None when no cells layer has one."""
    cells_layer = find_cells_layer(viewer, image_layer)
    if cells_layer is None or len(cells_layer.data) == 0:
        return None
    features = cells_layer.features
    if "selected" not in features or not features["selected"].fillna(False).any():
        return None
    index = int(np.flatnonzero(features["selected"].fillna(False).to_numpy(bool))[0])
    name = cells_layer.metadata[PLUGIN_KEY].get("image_layer")
    source = image_layer
    if source is None and name in viewer.layers:
        source = viewer.layers[name]
    if source is None:
        return None
    bbox = rectangle_to_bbox(cells_layer.data[index], source.data.shape)
    cell_id = int(cell_ids_from(features["cell"])[index])
    return SelectedCell(source, cells_layer, index, cell_id, bbox)


def connect_selection(cells_layer, image_layer) -> None:
    """Let the user choose the selected cell by selecting its shape or clicking it."""

    def on_highlight(event=None):
        chosen = sorted(cells_layer.selected_data)
        if len(chosen) == 1 and not _is_selected(cells_layer, chosen[0]):
            select_cell(cells_layer, chosen[0])

    def on_click(layer, event):
        if event.type != "mouse_press" or event.button != 1:
            return
        point = cells_layer.world_to_data(event.position)
        index = cell_at(cells_layer, point)
        if index is not None:
            select_cell(cells_layer, index)

    def on_edit(event=None):
        cells_layer.metadata[PLUGIN_KEY]["edited"] = True

    cells_layer.events.highlight.connect(on_highlight)
    cells_layer.events.data.connect(on_edit)
    # napari calls a layer's mouse callbacks only while that layer is active, so the
    # click works both on the image and on the cells layer (in pan/zoom mode).
    for layer in (image_layer, cells_layer):
        layer.mouse_drag_callbacks.append(on_click)


def _is_selected(cells_layer, index: int) -> bool:
    features = cells_layer.features
    return "selected" in features and bool(features["selected"].iloc[index])
