"""Relevance overlap widget: how much of each relevance map falls on each label.

Choose one or more relevance (attribution) layers and a labels layer, the threshold
rule for "relevant" pixels and how negative relevance is handled; **Compute** runs
:func:`napari_leukemia.quantify.quantify` per map and shows

* a **table dock** (sortable; *Copy* puts it on the clipboard as tab-separated text,
  *Save CSV…* writes it and never replaces a file without asking). Clicking a row
  highlights that label in the labels layer (``show_selected_label``);
* a **bar-chart dock** (matplotlib): one group of bars per label, one colour per map,
  for the metric chosen (relevant fraction, relevance mass or density).

The table is also stored as records in the labels layer's
``metadata["napari_leukemia"]["overlap"]`` for the console. With *auto-recompute*
checked, repainting the labels recomputes the table 300 ms after the last stroke.

Bad input gets a message, never a crash: empty labels (empty table), constant or
all-zero maps ("undefined", not drawn), maps with NaN/inf, labels of another shape
(the map's ROI transform is used when its layer metadata has one) or from another image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    PushButton,
    Select,
    SpinBox,
    create_widget,
)
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import layer_metadata, safe_files
from ..quantify import COLUMNS, empty_maps_table
from ..quantify import quantify_maps as overlap_table
from .labels_widget import _ask_overwrite, layer_label_names
from .layers import image_plane
from .workers import status_label

if TYPE_CHECKING:
    import napari

ATTRIBUTION_KIND = layer_metadata.ATTRIBUTION

#: Metrics the chart can show (columns of `quantify`).
CHART_METRICS = ("relevant_fraction", "relevance_mass", "relevance_density")
#: Columns of the table dock, in order.
TABLE_COLUMNS = ("map", *COLUMNS, "region")
#: Where a map with an ROI is quantified: on its ROI (the documented protocol) or the field.
REGIONS = ("cell ROI", "whole field")
_METRIC_COLUMNS = {
    "area_fraction",
    "relevant_fraction",
    "relevance_mass",
    "relevance_density",
    "rank_accuracy",
    "pointing_game",
}
UNDEFINED = "undefined"
THRESHOLD_RULES = ("mean", "percentile", "topk", "otsu", "number")
SIGNS = ("positive", "absolute", "signed")
#: Debounce of auto-recompute after the last paint stroke, in ms.
DEBOUNCE_MS = 300


# --------------------------------------------------------------------------- core


def is_attribution_layer(layer) -> bool:
    return layer_metadata.kind_of(layer) == ATTRIBUTION_KIND


def display_value(row: Mapping, column: str) -> str:
    """Text shown in the table for one cell (``undefined`` for undefined maps)."""
    value = row[column]
    if column in _METRIC_COLUMNS - {"area_fraction"} and not bool(row.get("defined", True)):
        return UNDEFINED
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}"
    return str(value)


# --------------------------------------------------------------------------- Qt panels


class _SortItem(QTableWidgetItem):
    """A table cell that sorts by a key (numbers numerically, 'undefined' last)."""

    def __init__(self, text: str, key, label_value: int):
        super().__init__(text)
        self._key = key
        self.setData(Qt.ItemDataRole.UserRole, int(label_value))
        self.setFlags(self.flags() & ~Qt.ItemFlag.ItemIsEditable)

    def __lt__(self, other):
        a, b = self._key, getattr(other, "_key", None)
        if isinstance(a, tuple) and isinstance(b, tuple):
            return a < b
        return super().__lt__(other)


def _sort_key(row: Mapping, column: str, text: str):
    if text == UNDEFINED:
        return (1, 0.0, "")
    value = row[column]
    if isinstance(value, (bool, np.bool_, int, np.integer, float, np.floating)):
        return (0, float(value), "")
    return (0, 0.0, str(value))


class OverlapTablePanel(QWidget):
    """Sortable table with Copy / Save CSV… buttons and row-click highlighting."""

    def __init__(self, on_row_clicked=None, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        # no sort column until the user clicks a header: rows stay in map / label order
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the table (as shown) as tab-separated text")
        self.save_button = QPushButton("Save CSV…")
        self.show_all_button = QPushButton("Show all labels")
        buttons = QHBoxLayout()
        for b in (self.copy_button, self.save_button, self.show_all_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.setMinimumHeight(230)
        self.frame = empty_maps_table()
        self._on_row_clicked = on_row_clicked
        self.table.cellClicked.connect(self._clicked)
        self.copy_button.clicked.connect(self.copy)
        self.save_button.clicked.connect(self._save_clicked)
        #: asks "replace?" for an existing CSV; tests replace it
        self.confirm_overwrite = _ask_overwrite
        self.ask_path = self._ask_path

    def set_frame(self, frame: pd.DataFrame, note: str = "") -> None:
        """Show a table (a `overlap_table` result)."""
        self.frame = frame
        self.note.setText(note)
        self.table.setSortingEnabled(False)
        self.table.clearContents()
        self.table.setRowCount(len(frame))
        records = frame.to_dict("records")
        for r, row in enumerate(records):
            for c, column in enumerate(TABLE_COLUMNS):
                text = display_value(row, column) if column in row else ""
                item = _SortItem(text, _sort_key(row, column, text), row.get("label", 0))
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def label_at(self, row: int) -> int | None:
        item = self.table.item(row, 0)
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def _clicked(self, row: int, _column: int) -> None:
        value = self.label_at(row)
        if value is not None and self._on_row_clicked is not None:
            self._on_row_clicked(value)

    def to_tsv(self) -> str:
        """The table as shown (current sort order) as tab-separated text with a header."""
        lines = ["\t".join(TABLE_COLUMNS)]
        for r in range(self.table.rowCount()):
            cells = []
            for c in range(self.table.columnCount()):
                item = self.table.item(r, c)
                cells.append("" if item is None else item.text())
            lines.append("\t".join(cells))
        return "\n".join(lines) + "\n"

    def copy(self, *_) -> str:
        text = self.to_tsv()
        QApplication.clipboard().setText(text)
        return text

    def save_csv(self, path, overwrite: bool = False) -> Path:
        """Write the full-precision table to CSV; an existing file needs `overwrite`."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another name or confirm replacing it."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with safe_files.staged([path], overwrite=overwrite) as (tmp,):  # unique temp name
            self.frame.to_csv(tmp, index=False)
        return path

    def _ask_path(self) -> str:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save overlap table",
            "relevance_overlap.csv",
            "CSV (*.csv)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        return path

    def _save_clicked(self, *_):
        path = self.ask_path()
        if not path:
            return None
        path = Path(path)
        overwrite = False
        if path.exists():
            if not self.confirm_overwrite(path):
                show_info(f"Not saved: {path.name} exists and was left unchanged.")
                return None
            overwrite = True
        try:
            written = self.save_csv(path, overwrite=overwrite)
        except OSError as error:
            show_error(f"Save CSV: {error}")
            return None
        show_info(f"Saved the overlap table to {written}.")
        return written


class OverlapChartPanel(QWidget):
    """Grouped bar chart: one group per label, one colour per map."""

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot(111)
        self.bars: dict[str, Any] = {}
        self.groups: list[str] = []
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(220)

    def plot(self, frame: pd.DataFrame, metric: str = "relevance_mass") -> None:
        """Draw `frame` (an `overlap_table` result); undefined maps are not drawn."""
        from matplotlib import colormaps

        ax = self.axes
        ax.clear()
        for legend in list(self.figure.legends):  # the last plot's legend
            legend.remove()
        self.bars = {}
        self.groups = []
        if frame.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            self.canvas.draw_idle()
            return
        ax.set_axis_on()
        maps = list(dict.fromkeys(frame["map"]))
        defined = frame[frame["defined"].astype(bool)]
        skipped = [m for m in maps if m not in set(defined["map"])]
        groups = frame[["label", "name"]].drop_duplicates("label").sort_values("label")
        self.groups = [str(n) for n in groups["name"]]
        x = np.arange(len(groups))
        drawn = [m for m in maps if m not in skipped]
        width = 0.8 / max(len(drawn), 1)
        palette = colormaps["tab10"]
        for i, name in enumerate(drawn):
            rows = defined[defined["map"] == name].set_index("label")
            values = np.array(
                [float(rows[metric].get(v, 0.0)) for v in groups["label"]], dtype=float
            )
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
            offset = (i - (len(drawn) - 1) / 2) * width
            color = palette(maps.index(name) % 10)
            self.bars[name] = ax.bar(x + offset, values, width, label=name, color=color)
        ax.set_xticks(x, self.groups, rotation=20, ha="right")
        ax.set_ylabel(metric.replace("_", " "))
        if metric == "relevance_density":
            ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        if drawn:  # under the axes, never over the bars or the label names
            self.figure.legend(
                *ax.get_legend_handles_labels(),
                loc="outside lower center",
                fontsize="small",
                frameon=False,
            )
        title = f"{metric.replace('_', ' ')} per label"
        if skipped:
            title += f"\n{UNDEFINED} (not drawn): " + ", ".join(skipped)
        ax.set_title(title, fontsize="small")
        self.canvas.draw_idle()


# --------------------------------------------------------------------------- widget


class RelevanceOverlapWidget(Container):
    """Relevance maps × a labels layer → overlap table and bar chart docks."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._viewer = viewer
        self.maps = Select(label="relevance maps", choices=self._map_choices, allow_multiple=True)
        self.maps.native.setMinimumHeight(80)
        self.labels = create_widget(annotation="napari.layers.Labels", label="labels")
        self.threshold = ComboBox(label="threshold", choices=THRESHOLD_RULES, value="mean")
        self.percentile = FloatSpinBox(
            label="percentile P", min=0.0, max=100.0, step=1.0, value=90.0, visible=False
        )
        self.topk = SpinBox(label="top N pixels", min=1, max=10**9, value=1000, visible=False)
        self.number = FloatSpinBox(
            label="value", min=-1e12, max=1e12, step=0.01, value=0.0, visible=False
        )
        self.sign = ComboBox(
            label="sign",
            choices=SIGNS,
            value="positive",
            tooltip="positive: clip negatives; absolute: |R|; signed: raw values",
        )
        self.region = ComboBox(
            label="region",
            choices=REGIONS,
            value="cell ROI",
            tooltip="cell ROI: a map of one cell is quantified on its ROI, on the model's "
            "input grid, as in docs/quantify.md; whole field: over the whole image",
        )
        self.metric = ComboBox(label="chart", choices=CHART_METRICS, value="relevance_mass")
        self.compute_button = PushButton(text="Compute")
        self.auto = CheckBox(value=False, text="auto-recompute on repaint")
        self.message = status_label("")
        self.extend(
            [
                self.maps,
                self.labels,
                self.threshold,
                self.percentile,
                self.topk,
                self.number,
                self.sign,
                self.region,
                self.metric,
                self.compute_button,
                self.auto,
                self.message,
            ]
        )
        self.table = empty_maps_table()
        self.table_panel = OverlapTablePanel(on_row_clicked=self.highlight_label)
        self.table_panel.show_all_button.clicked.connect(self._show_all)
        self.chart_panel = OverlapChartPanel()
        self.table_dock = None
        self.chart_dock = None
        self.messages: list[str] = []

        self._timer = QTimer(self.native)  # deleted with the widget, never before it
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.compute)
        self._watched = None

        self.threshold.changed.connect(self._threshold_changed)
        self.compute_button.changed.connect(self.compute)
        self.metric.changed.connect(
            lambda *_: self.chart_panel.plot(self.table, self.metric.value)
        )
        self.auto.changed.connect(lambda *_: self._watch(self.labels.value))
        self.labels.changed.connect(self._watch)
        self._known: set[str] = set()
        layers = viewer.layers
        layers.events.inserted.connect(self._refresh_maps)
        layers.events.inserted.connect(self._prefer_painted_labels)
        layers.events.removed.connect(self._refresh_maps)
        layers.events.moved.connect(self._refresh_maps)
        self.native.destroyed.connect(lambda *_: self._disconnect())
        self._refresh_maps()
        self._prefer_painted_labels()

    # ---------------------------------------------------------------- layers

    def _prefer_painted_labels(self, *_):
        """Offer labels that hold something: a new painted or suggested layer replaces
        an empty choice (e.g. 'New labels' made before 'Suggest labels'); a user's
        choice of a painted layer is kept."""
        from napari.layers import Labels

        self.labels.reset_choices()
        current = self.labels.value
        if current is not None and np.any(current.data):
            return
        painted = [
            lay for lay in self._viewer.layers if isinstance(lay, Labels) and np.any(lay.data)
        ]
        if painted:
            self.labels.value = painted[-1]

    def _map_layer_names(self) -> list[str]:
        """Layers that can be relevance maps: one-channel images that the plugin did not
        make as something else (ROIs, preprocessed images, image views)."""
        from napari.layers import Image

        return [
            lay.name
            for lay in self._viewer.layers
            if isinstance(lay, Image)
            and not lay.rgb
            and layer_metadata.kind_of(lay) in (None, ATTRIBUTION_KIND)
        ]

    def _map_choices(self, *_) -> list[str]:
        # a callable, so napari's reset_choices on layer changes keeps it current
        return self._map_layer_names()

    def _refresh_maps(self, *_):
        """Keep the map choices in sync; newly added attribution layers get selected."""
        names = self._map_layer_names()
        chosen = [n for n in (self.maps.value or []) if n in names]
        for name in names:
            if name not in self._known and is_attribution_layer(self._viewer.layers[name]):
                chosen.append(name)
        self._known = set(names)
        self.maps.reset_choices()
        self.maps.value = chosen

    def _disconnect(self):
        layers = self._viewer.layers
        for handler in (self._refresh_maps, self._prefer_painted_labels):
            for event in (layers.events.inserted, layers.events.removed, layers.events.moved):
                event.disconnect(handler)
        with contextlib.suppress(RuntimeError):  # Qt may already have deleted it at exit
            self._timer.stop()
        self._watch(None)

    def _threshold_changed(self, value):
        self.percentile.visible = value == "percentile"
        self.topk.visible = value == "topk"
        self.number.visible = value == "number"

    def threshold_value(self):
        """The threshold rule as `quantify` takes it."""
        rule = self.threshold.value
        if rule == "percentile":
            return f"percentile:{self.percentile.value:g}"
        if rule == "topk":
            return f"topk:{int(self.topk.value)}"
        if rule == "number":
            return float(self.number.value)
        return rule

    # ---------------------------------------------------------------- auto

    def _watch(self, layer):
        """Recompute after `layer` is repainted, while auto-recompute is checked."""
        if self._watched is not None:
            for event in (self._watched.events.paint, self._watched.events.data):
                event.disconnect(self._schedule)
            self._watched = None
        if layer is not None and self.auto.value:
            layer.events.paint.connect(self._schedule)
            layer.events.data.connect(self._schedule)
            self._watched = layer

    def _schedule(self, *_):
        with contextlib.suppress(RuntimeError):  # the widget is being closed
            self._timer.start()  # restarts: one recompute after the last stroke

    # ---------------------------------------------------------------- compute

    def _tell(self, texts: list[str], level: str = "info") -> None:
        for text in texts:
            self.messages.append(text)
            {"info": show_info, "warning": show_warning, "error": show_error}[level](text)

    def compute(self, *_):
        """Quantify the chosen maps against the chosen labels and show the results."""
        self.messages = []
        labels_layer = self.labels.value
        chosen = list(self.maps.value or [])
        names = [n for n in chosen if n in self._viewer.layers]
        gone = [n for n in chosen if n not in names]
        if gone:
            self._tell([f"No layer called {', '.join(map(repr, gone))} any more."], "warning")
        if labels_layer is None or not names:
            what = "a labels layer" if labels_layer is None else "at least one relevance map"
            text = f"Choose {what} first."
            self.message.value = text
            self._tell([text], "error")
            return self.table
        labels = image_plane(labels_layer, self._viewer)
        maps, regions, problems = self._collect_maps(names, labels_layer, labels.shape)
        table, notes, errors = overlap_table(
            maps,
            labels,
            layer_label_names(labels_layer) or None,
            self.threshold_value(),
            self.sign.value,
        )
        errors = problems + errors
        table["region"] = [regions[name] for name in table["map"]]
        self._tell(notes, "warning")
        self._tell(errors, "error")
        self.table = table
        settings = {
            "threshold": self.threshold_value(),
            "sign": self.sign.value,
            "region": self.region.value,
            "maps": list(maps),
        }
        layer_metadata.update(
            labels_layer, overlap=table.to_dict("records"), overlap_settings=settings
        )
        summary = (
            f"{len(table)} rows from {table['map'].nunique() if len(table) else 0} map(s) "
            f"on '{labels_layer.name}' (threshold {self.threshold_value()}, "
            f"sign {self.sign.value}, region {self.region.value})."
        )
        shown = [summary, *notes, *errors]
        self.message.value = "\n".join(_short(t) for t in shown)
        self._ensure_docks()
        self.table_panel.set_frame(table, "\n".join(_short(t, 240) for t in shown))
        self.chart_panel.plot(table, self.metric.value)
        return table

    def _collect_maps(self, names, labels_layer, labels_shape):
        from ..images import ImageError

        maps, regions, problems = {}, {}, []
        label_image = layer_metadata.image_layer_of(labels_layer)
        for name in names:
            layer = self._viewer.layers[name]
            try:
                plane = image_plane(layer, self._viewer)
            except ImageError as error:
                problems.append(f"'{name}': {error}")
                continue
            transform = layer_metadata.roi_transform_of(layer)
            if transform is not None and _on_image_grid(plane, transform):
                transform = None  # an image-shaped map (as the Explain widget adds)
            source = layer_metadata.image_layer_of(layer)
            if (
                label_image is not None
                and source is not None
                and source != label_image
                and not _same_field(source, label_image)
            ):
                self._tell(
                    [
                        f"'{name}' was computed on '{source}' but '{labels_layer.name}' was "
                        f"painted on '{label_image}': check that they show the same field."
                    ],
                    "warning",
                )
            if plane.shape[:2] != tuple(labels_shape) and transform is None:
                problems.append(
                    f"'{name}' is {plane.shape[0]}x{plane.shape[1]} but "
                    f"'{labels_layer.name}' is {labels_shape[0]}x{labels_shape[1]}, and the "
                    "map has no ROI transform: the labels belong to a different image. Choose "
                    "the labels painted on the image this map was computed from."
                )
                continue
            maps[name], regions[name] = self._region_of(layer, plane, transform)
        return maps, regions, problems

    def _region_of(self, layer, plane, transform):
        """(map, transform) to quantify and the region's name, as the user chose."""
        roi_map = layer_metadata.read(layer).get(layer_metadata.ROI_MAP)
        roi_transform = layer_metadata.roi_transform_of(layer)
        if self.region.value == "cell ROI" and roi_map is not None and roi_transform:
            rows, cols = np.shape(roi_map)
            return (np.asarray(roi_map), roi_transform), f"cell ROI ({rows}x{cols})"
        return (plane, transform), "whole field" if transform is None else "map grid"

    def _ensure_docks(self):
        window = self._viewer.window
        if self.table_dock is None or self.table_panel.parent() is None:
            self.table_dock = window.add_dock_widget(
                self.table_panel, name="Relevance overlap · table", area="bottom"
            )
        if self.chart_dock is None or self.chart_panel.parent() is None:
            # beside the table (Qt lays bottom docks side by side), so the widget column
            # keeps its height on a 1000 px screen
            self.chart_dock = window.add_dock_widget(
                self.chart_panel, name="Relevance overlap · chart", area="bottom"
            )
        for dock in (self.table_dock, self.chart_dock):
            if not dock.isVisible():
                dock.show()

    # ---------------------------------------------------------------- highlight

    def highlight_label(self, value: int) -> None:
        """Show only label `value` in the labels layer (a clicked table row)."""
        layer = self.labels.value
        if layer is None:
            return
        layer.selected_label = int(value)
        layer.show_selected_label = True

    def _show_all(self, *_):
        layer = self.labels.value
        if layer is not None:
            layer.show_selected_label = False


def _on_image_grid(plane: np.ndarray, transform) -> bool:
    """True when the map already has the shape of the image its ROI transform maps to."""
    shape = getattr(transform, "image_shape", None)
    if shape is None and isinstance(transform, Mapping):
        shape = transform.get("image_shape")
    try:
        return shape is not None and tuple(int(v) for v in shape) == tuple(plane.shape[:2])
    except (TypeError, ValueError):
        return False


def _same_field(a: str, b: str) -> bool:
    """Layer names of the same field (e.g. 'smear' and 'smear · unsharp mask')."""
    return a.startswith(f"{b} · ") or b.startswith(f"{a} · ")


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
