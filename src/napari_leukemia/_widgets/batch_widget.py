"""Batch widget: run `napari_leukemia.batch.run_batch` on a folder and browse its store.

The widget gathers the inputs (a folder or files), the methods, the model, the output
store and the number of Dask worker processes, and runs the batch in a worker thread;
the batch's progress report (`batch.progress.Progress`) drives the widget's bar, and
Stop ends the run after the image in progress (finished images stay in the store and
the next Run resumes). A finished run, "Open store", or a store opened through napari's
File > Open fills the results dock: a table of images and one of cells. Clicking a row
opens that image's layers from the store (`batch.reader.read_store`), replacing the
layers of the store image shown before (never a user's layer), and selects the cell
(`selection.select_cell`), which also shows that cell's maps.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    Container,
    FileEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    Table,
)
from superqt.utils import ensure_main_thread

from .. import layer_metadata
from ..batch.cluster import default_workers
from ..batch.reader import ROLE, read_store, store_of, store_overview
from ..batch.store import StoreError
from ..explain.methods import METHODS
from . import selection
from .layers import chosen_model_path, model_file_edit
from .workers import run_in_worker, status_label

if TYPE_CHECKING:
    import napari

DEFAULT_METHODS = ("grad_cam",)
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp)"
CELL_COLUMNS = ("image", "cell", "class", "malignant_probability", "score", "area")
DOCK_NAME = "Batch · results"


class _Stopped(Exception):
    """Raised from the progress report when the user pressed Stop."""


def batch_in_worker(inputs, out, options: dict, report, stop: threading.Event):
    """Worker body: `run_batch` with `report(done, total, cells)` as its progress; None
    when `stop` was set (the run ends after the image in progress)."""
    from ..batch import BatchError, InputError, run_batch
    from ..batch.cluster import ClusterError

    def progress(done, total, cells):
        report(done, total, cells)
        if stop.is_set():
            raise _Stopped

    try:
        return run_batch(inputs, out, progress=progress, **options)
    except _Stopped:
        return None
    except (BatchError, StoreError, InputError, ClusterError) as error:
        raise type(error)(in_widget_terms(str(error))) from None


#: The command line's option names in core messages, and this widget's field names.
FIELD_NAMES = {
    "--overwrite": "'replace a store of other settings'",
    "--out": "'output store'",
    "--workers": "'workers'",
    "--model": "'model'",
}


def in_widget_terms(message: str) -> str:
    """A core error message with the option names replaced by the widget's fields."""
    for option, field in FIELD_NAMES.items():
        message = message.replace(f"pass {option}", f"tick {field}").replace(option, field)
    return message


def _paths(edit) -> list[Path]:
    """The paths chosen in a FileEdit (empty fields and '.' mean none)."""
    value = edit.value
    values = value if isinstance(value, (tuple, list)) else [value]
    return [Path(v) for v in values if v is not None and str(v).strip() not in ("", ".")]


def cells_frame(cells):
    """The cells table as shown: the columns a reader wants first, probabilities as
    percentages (as text: the table would print small fractions as 3.1e-02)."""
    if not len(cells):
        return cells
    first = [c for c in CELL_COLUMNS if c in cells]
    probabilities = [c for c in cells if str(c).startswith("P(")]
    frame = cells[first + probabilities].rename(columns={"malignant_probability": "P(malignant)"})
    for column in [c for c in frame if str(c).startswith("P(")]:
        frame[column] = [f"{100 * float(p):.1f} %" for p in frame[column]]
    return frame.round(3)


class BatchResults(Container):
    """The results dock: images and cells of a store; a clicked row opens it."""

    def __init__(self, on_row):
        super().__init__()
        self.images = Table(label="images")
        self.cells = Table(label="cells")
        for table in (self.images, self.cells):
            table.read_only = True
            table.native.setMinimumHeight(100)
        self.extend([self.images, self.cells])
        self.frames = {"images": None, "cells": None}
        self.images.native.cellClicked.connect(lambda row, _: on_row("images", row))
        self.cells.native.cellClicked.connect(lambda row, _: on_row("cells", row))

    def show(self, overview: dict) -> None:
        self.frames = {"images": overview["images"], "cells": cells_frame(overview["cells"])}
        self.images.value = self.frames["images"]
        self.cells.value = self.frames["cells"]


class BatchWidget(Container):
    """Run the batch chain on many images into a store, then browse the results."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.folder = FileEdit(mode="d", label="image folder", nullable=True)
        self.files = FileEdit(mode="rm", label="or files", filter=IMAGE_FILTER, nullable=True)
        self.methods = Select(
            label="methods",
            choices=[(info.label, method) for method, info in METHODS.items()],
            value=list(DEFAULT_METHODS),
            tooltip="attribution methods computed for every cell",
        )
        self.methods.native.setMaximumHeight(110)
        self.model_file = model_file_edit()
        self.out = FileEdit(
            mode="d", label="output store", nullable=True,
            tooltip="a new or empty folder, or a store of an earlier run to resume",
        )  # fmt: skip
        self.workers = SpinBox(
            value=default_workers(), min=1, max=max(64, default_workers()), label="workers",
            tooltip="Dask worker processes (each loads the model once)",
        )  # fmt: skip
        self.overwrite = CheckBox(text="replace a store of other settings", value=False)
        self.run_button = PushButton(text="Run batch")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.open_button = PushButton(text="Open store")
        self.progress = ProgressBar(min=0, max=1, value=0, visible=False, label="")
        self.status = status_label("Choose images and an output store, then Run.")
        self.extend([
            self.folder, self.files, self.methods, self.model_file, self.out, self.workers,
            self.overwrite, self.run_button, self.stop_button, self.progress, self.status,
            self.open_button,
        ])  # fmt: skip
        self.results = BatchResults(self._row_clicked)
        self.dock = None
        self.store: Path | None = None
        self.worker = None
        self.last_report = None
        self._stop = threading.Event()
        self._connected: list = []  # cells layers whose clicks select cells
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.open_button.changed.connect(lambda *_: self.open_store())
        viewer.layers.events.inserted.connect(self._on_inserted)
        selection.on_selection_changed(self, self._show_selected_maps)

    # ---------------------------------------------------------------- running
    def _inputs(self) -> list[Path]:
        return _paths(self.folder) + _paths(self.files)

    def run(self, *_):
        """Start the batch in a worker thread (after checking the form)."""
        inputs, out = self._inputs(), _paths(self.out)
        problem = (
            "Choose an image folder or image files." if not inputs
            else "Choose an output store folder." if not out
            else "Choose at least one method." if not self.methods.value
            else None
        )  # fmt: skip
        if problem:
            self.status.value = problem
            return
        options = {
            "methods": list(self.methods.value),
            "model": chosen_model_path(self.model_file),
            "workers": int(self.workers.value),
            "overwrite": bool(self.overwrite.value),
        }
        self._stop.clear()
        self.stop_button.enabled = True
        self.progress.max, self.progress.value = 1, 0
        self.status.value = "Starting the Dask workers and loading the model…"
        self.worker = run_in_worker(
            batch_in_worker, [str(p) for p in inputs], str(out[0]), options,
            self._report_progress, self._stop,
            action="Batch", button=self.run_button, progress=self.progress,
            status=self.status, on_returned=self._finished, on_done=self._done,
        )  # fmt: skip

    def stop(self, *_):
        """Stop after the image in progress; what is finished stays in the store."""
        self._stop.set()
        self.stop_button.enabled = False
        self.status.value = "Stopping after the image in progress…"

    @ensure_main_thread
    def _report_progress(self, done: int, total: int, cells: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.progress.label = f"{done}/{total}"
        if not self._stop.is_set():
            self.status.value = f"{done}/{total} images, {cells} cells this run…"

    def _finished(self, report) -> None:
        self.last_report = report
        out = _paths(self.out)[0]
        if report is None:
            self.status.value = (
                "Stopped. The finished images are kept in the store; Run again to resume."
            )
        else:
            self.status.value = (
                f"{report.analysed} image(s) analysed, {report.skipped} already in the "
                f"store, {report.failed} failed; {report.cells} cells. Click a row to open it."
            )
        self.open_store(out, keep_status=True)

    def _done(self) -> None:
        self.stop_button.enabled = False

    # ---------------------------------------------------------------- browsing
    def open_store(self, path=None, keep_status: bool = False) -> bool:
        """Show the images and cells of the store at `path` (default: the output field)."""
        if path is None:
            chosen = _paths(self.out)
            if not chosen:
                self.status.value = "Choose the store folder in 'output store', then Open."
                return False
            path = chosen[0]
        try:
            overview = store_overview(path)
        except (StoreError, OSError, ValueError) as error:
            self.status.value = f"Cannot open the store: {error}"
            return False
        self.store = Path(path).resolve()
        self.results.show(overview)
        self._ensure_dock()
        if not keep_status:
            n_images, n_cells = len(overview["images"]), len(overview["cells"])
            self.status.value = f"{n_images} image(s), {n_cells} cells. Click a row to open it."
        return True

    def _ensure_dock(self) -> None:
        if self.dock is None or self.results.native.parent() is None:
            self.dock = self._viewer.window.add_dock_widget(
                self.results, name=DOCK_NAME, area="bottom"
            )
        if not self.dock.isVisible():
            self.dock.show()

    def _row_clicked(self, table: str, row: int) -> None:
        frame = self.results.frames[table]
        if frame is None or not 0 <= row < len(frame):
            return
        record = frame.iloc[row]
        if table == "images" and record.get("error"):
            self.status.value = f"{record['image']} failed: {record['error']}"
            return
        cell = int(record["cell"]) if table == "cells" else None
        self.show_image(str(record["image"]), cell)

    def show_image(self, name: str, cell: int | None = None) -> None:
        """Show image `name` of the open store (its layers replace the last store
        image's) and select `cell` (default: the first)."""
        if self.store is None:
            self.status.value = "Open a store first."
            return
        cells_layer = self._cells_layer(name)
        if cells_layer is None:
            try:
                layer_data = read_store(self.store, name)
            except (StoreError, OSError, ValueError) as error:
                self.status.value = f"Cannot open {name}: {error}"
                return
            for layer in [layer for layer in self._viewer.layers if store_of(layer)]:
                self._viewer.layers.remove(layer)
            for data, kwargs, kind in layer_data:
                getattr(self._viewer, f"add_{kind}")(data, **kwargs)
            cells_layer = self._cells_layer(name)
        if cells_layer is None:
            self.status.value = f"{name}: no cell was detected in this image."
            return
        ids = cells_layer.features["cell"].to_numpy()
        rows = np.flatnonzero(ids == (ids[0] if cell is None else cell))
        if not len(rows):
            self.status.value = f"{name} has no cell {cell}."
            return
        self._viewer.layers.selection.active = cells_layer
        selection.select_cell(cells_layer, int(rows[0]))
        self.status.value = f"{name}: cell {int(ids[rows[0]])} selected."

    def _cells_layer(self, name: str):
        for layer in self._viewer.layers:
            where = store_of(layer)
            mine = where is not None and where[1] == name
            if mine and selection.is_cells_layer(layer) and Path(where[0]).resolve() == self.store:
                return layer
        return None

    def _on_inserted(self, event) -> None:
        """Store cells layers select cells on click; a store opened with File > Open
        also fills the results dock."""
        layer = event.value
        where = store_of(layer)
        if where is None or not selection.is_cells_layer(layer):
            return
        image = next(
            (other for other in self._viewer.layers
             if store_of(other) == where and layer_metadata.read(other).get(ROLE) == "image"),
            None,
        )  # fmt: skip
        if image is None:
            return
        layer_metadata.update(layer, **{layer_metadata.IMAGE_LAYER: image.name})
        if not any(layer is other for other in self._connected):
            selection.connect_selection(layer, image)
            self._connected = [c for c in self._connected if c in self._viewer.layers]
            self._connected.append(layer)
        if self.store != Path(where[0]).resolve():
            self.open_store(where[0])

    def _show_selected_maps(self, cells_layer) -> None:
        """Step the map layers (axis 0 = cell) of a store image to the selected cell."""
        where = store_of(cells_layer)
        if where is None:
            return
        features = cells_layer.features
        chosen = np.flatnonzero(features["selected"].fillna(False).to_numpy(bool))
        if not len(chosen):
            return
        cell = int(features["cell"].iloc[chosen[0]])
        for layer in self._viewer.layers:
            meta = layer_metadata.read(layer)
            if store_of(layer) == where and meta.get(ROLE) == "map" and cell in meta["cells"]:
                axis = self._viewer.dims.ndim - layer.ndim
                self._viewer.dims.set_current_step(axis, meta["cells"].index(cell))
                break
