"""Detect cells widget: find leukocytes on an image layer and pick the selected cell."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FloatSlider, PushButton, create_widget
from napari.utils.notifications import show_error, show_info

from ..cells import detect_cells
from ..images import ImageError
from . import selection
from .layers import image_plane, placement
from .workers import run_in_worker, status_label

if TYPE_CHECKING:
    import napari


class DetectCellsWidget(Container):
    """Detect cells → a Shapes layer of editable boxes; click a box to select its cell."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self._min_score = FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, label="min score")
        self._run = PushButton(text="Detect cells")
        self._status = status_label("No cells detected yet.")
        # choices are computed (napari re-evaluates them whenever layers change)
        self._cell = ComboBox(label="selected cell", choices=self._cell_choices)
        self.extend([self.image, self._min_score, self._run, self._cell, self._status])
        self._run.changed.connect(self.run)
        self._cell.changed.connect(self._on_choice)
        selection.on_selection_changed(self, self._on_selection_changed)
        self.worker = None

    def run(self):
        """Start detection in a worker; the result is added by `_show`."""
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to detect cells on.")
            return
        try:
            plane = image_plane(layer, self._viewer)
        except ImageError as error:
            show_error(f"Detect cells on '{layer.name}': {error}")
            return
        self._status.value = "Detecting…"
        self.worker = run_in_worker(
            functools.partial(detect_cells, plane, min_score=self._min_score.value),
            action="Detection",
            button=self._run,
            status=self._status,
            on_returned=lambda cells: self.show_cells(cells, layer, plane),
        )

    def show_cells(self, cells, layer, plane=None):
        """Add `cells` (found on `layer`) as an editable cells layer; select the first.

        `plane`, the pixels they were found on, picks readable colours for the numbers.
        """
        if not cells:
            self._status.value = f"No cells found on '{layer.name}'."
            show_info(f"No cells found on '{layer.name}'. Lower 'min score' or draw a box.")
        data, kwargs, _ = selection.cells_layer_data(cells, layer.name, plane)
        for old in selection.unedited_cells_layers(self._viewer, layer.name):
            self._viewer.layers.remove(old)  # our own earlier result; edited ones are kept
        cells_layer = self._viewer.add_shapes(data, **kwargs, **placement(layer))
        selection.connect_selection(cells_layer, layer)
        self._viewer.layers.selection.active = cells_layer
        cells_layer.mode = "select"
        if cells:
            found = "1 cell" if len(cells) == 1 else f"{len(cells)} cells"
            self._status.value = f"{found} on '{layer.name}'. Click one to select it."
            selection.select_cell(cells_layer, 0)

    def _cell_choices(self, *_) -> list[str]:
        cells_layer = selection.find_cells_layer(self._viewer)
        if cells_layer is None or len(cells_layer.data) == 0:
            return []
        return [f"cell {i}" for i in selection.cell_ids_from(cells_layer.features["cell"])]

    def _on_selection_changed(self, cells_layer):
        if cells_layer.name not in [layer.name for layer in self._viewer.layers]:
            return  # a cells layer of another viewer
        chosen = selection.selected_cell(self._viewer)
        with self._cell.changed.blocked():
            self._cell.reset_choices()
            if chosen is not None and chosen.label in self._cell.choices:
                self._cell.value = chosen.label

    def _on_choice(self, value):
        cells_layer = selection.find_cells_layer(self._viewer)
        if cells_layer is None or value is None:
            return
        index = list(self._cell.choices).index(value)
        selection.select_cell(cells_layer, index)
