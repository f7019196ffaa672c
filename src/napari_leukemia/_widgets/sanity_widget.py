"""Sanity checks widget: does the call follow the selected cell, does the map follow the model?

Runs `napari_leukemia.sanity.context.context_check` and
`napari_leukemia.sanity.randomization.randomization_check` on the selected cell in one
worker, shows both tables and verdicts, and adds what was tested as a small grid of
image layers beside the image: each tile is the model's window around the classified
box in one context (in place, blank slide, moved, pasted into a smear or donor), named
with its call. Tiles carry ``metadata["napari_leukemia"]`` of kind ``"sanity_context"``;
a new run replaces the plugin's own tiles of that image and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, ProgressBar, PushButton, SpinBox, Table
from napari.utils.notifications import show_error, show_warning

from .. import layer_metadata
from ..explain.methods import METHODS
from ..images import ImageError
from ..roi import square_window
from . import selection
from .layers import chosen_model_path, image_plane, model_file_edit, placement
from .workers import preload_model, run_in_worker, status_label, waiting_message

if TYPE_CHECKING:
    import napari

KIND = layer_metadata.SANITY_TILE
DEFAULT_METHOD = "gradient_x_input"
#: Tiles per row of the grid, and the gap between tiles (image pixels).
GRID_COLUMNS = 4
GRID_GAP = 4


def run_checks(plane, model_path: Path | None, bbox, method: str, n: int):
    """Worker body: load the model (cached) and run both checks on one cell."""
    from ..model.backend import import_tensorflow
    from ..model.classify import load_model
    from ..sanity.context import context_check
    from ..sanity.randomization import randomization_check

    import_tensorflow()
    loaded = load_model(model_path)
    context = context_check(plane, bbox, loaded, n=n)
    randomization = randomization_check(plane, method, loaded, bbox)
    return context, randomization, loaded.info.input.margin


def tile(image: np.ndarray, bbox, margin: float) -> np.ndarray:
    """The model's square window around `bbox` (white where it leaves the image)."""
    top, left, bottom, right = square_window(bbox, margin, image.shape)
    out = np.full((bottom - top, right - left, 3), 255, np.uint8)
    rows, cols = image.shape[:2]
    t, l_, b, r = max(top, 0), max(left, 0), min(bottom, rows), min(right, cols)
    out[t - top : b - top, l_ - left : r - left] = image[t:b, l_:r]
    return out


def display_frame(table):
    """The table as shown: numbers to 3 decimals, boxes as text."""
    frame = table.copy()
    if "bbox" in frame:
        frame["bbox"] = [str(tuple(b)) for b in frame["bbox"]]
    return frame.round(3)


class SanityWidget(Container):
    """Context swap and model-randomisation checks for the selected cell."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_image_combo()
        self.model_file = model_file_edit()
        self.method = ComboBox(
            label="map method",
            choices=[(info.label, method) for method, info in METHODS.items()],
            value=DEFAULT_METHOD,
            tooltip="attribution method whose maps the randomisation check compares",
        )
        self.contexts = SpinBox(
            value=8, min=0, max=24, label="contexts", tooltip="other surroundings to try"
        )
        self.run_button = PushButton(text="Run sanity checks")
        self.progress = ProgressBar(min=0, max=0, visible=False, label="")
        self.status = status_label("Select a cell, then run the checks.")
        self.context_table = Table(label="context")
        self.random_table = Table(label="randomisation")
        for table in (self.context_table, self.random_table):
            table.native.setMinimumHeight(90)  # the dock must fit a 1000 px high screen
            table.read_only = True
        self.extend(
            [
                self.image,
                self.model_file,
                self.method,
                self.contexts,
                self.run_button,
                self.progress,
                self.status,
                self.context_table,
                self.random_table,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.worker = None
        self.last_result = None
        self.tiles: list = []
        preload_model(self._model_path())

    def _model_path(self) -> Path | None:
        return chosen_model_path(self.model_file)

    def run(self, *_):
        """Start both checks for the selected cell in a worker thread."""
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer for the sanity checks.")
            return
        cell = selection.selected_cell(self._viewer, layer)
        if cell is None:
            show_error(
                f"No cell of '{layer.name}' is selected: run Detect cells and click a cell."
            )
            return
        try:
            plane = np.array(image_plane(layer, self._viewer))  # a copy: the layer is not touched
        except ImageError as error:
            show_error(f"Sanity checks on '{layer.name}': {error}")
            return
        self.status.value = waiting_message(self._model_path(), f"Checking {cell.label}…")
        self.worker = run_in_worker(
            run_checks,
            plane,
            self._model_path(),
            cell.bbox,
            self.method.value,
            int(self.contexts.value),
            action="Sanity checks",
            button=self.run_button,
            progress=self.progress,
            status=self.status,
            on_returned=lambda result: self._show(result, layer, cell),
        )

    def _show(self, result, layer, cell):
        context, randomization, margin = result
        self.last_result = {"context": context, "randomization": randomization, "cell": cell}
        self.context_table.value = display_frame(context.table)
        self.random_table.value = display_frame(randomization.table)
        self.status.value = (
            f"<b>{cell.label}</b>: {context.verdict}<br>"
            f"{METHODS[randomization.method].label}: {randomization.verdict}"
        )
        self.tiles = self._show_tiles(context, layer, cell, margin)
        for note in [*context.notes, *randomization.notes]:
            show_warning(note)

    def _show_tiles(self, context, layer, cell, margin) -> list:
        """Replace this image's tiles with a grid of the tested windows, right of it."""
        viewer = self._viewer
        active = viewer.layers.selection.active
        for old in [lay for lay in viewer.layers if _is_tile_of(lay, layer.name)]:
            viewer.layers.remove(old)
        where = placement(layer)
        scale, origin = np.asarray(where["scale"]), np.asarray(where["translate"])
        columns = layer.data.shape[-2] if layer.rgb else layer.data.shape[-1]
        calls, changed = context.table["class"].tolist(), context.table["changed"].tolist()
        added = []
        for i, item in enumerate(context.images):
            image = tile(item.image, item.bbox, margin)
            step = image.shape[0] + GRID_GAP
            row, col = divmod(i, GRID_COLUMNS)
            offset = np.array([row * step, columns + GRID_GAP + col * step])
            mark = " (changed)" if changed[i] else ""
            added.append(
                viewer.add_image(
                    image,
                    rgb=True,
                    name=f"sanity · {layer.name} · {i}. {item.context}: {calls[i]}{mark}",
                    scale=tuple(scale),
                    translate=tuple(origin + scale * offset),
                    metadata=layer_metadata_for(layer.name, cell, item, calls[i]),
                )
            )
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active
        return added


def create_image_combo():
    from magicgui.widgets import create_widget

    return create_widget(annotation="napari.layers.Image", label="image")


def layer_metadata_for(image_name: str, cell, item, call: str) -> dict:
    return layer_metadata.make(
        KIND,
        image_layer=image_name,
        cell=cell.cell_id,
        context=item.context,
        bbox=[int(v) for v in item.bbox],
        **{"class": call},
    )


def _is_tile_of(layer, image_name: str) -> bool:
    return (
        layer_metadata.kind_of(layer) == KIND
        and layer_metadata.image_layer_of(layer) == image_name
    )
