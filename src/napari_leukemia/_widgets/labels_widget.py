"""Morphology labels widget: new named label layers, custom classes, a draft, files.

* **New morphology labels**: an empty Labels layer the size of the chosen image with the
  five classes of document 003 (1 nucleus, 2 cytoplasm, 3 vacuole, 4 red blood cell,
  5 background), fixed colours and a ``features`` table (``index``, ``name``) so that
  napari's status bar shows "name: nucleus" under the cursor, not just "1".
* **Add class**: a user class gets the next free value, a colour of its own, a row in
  ``features`` and an entry in the colormap; it becomes the brush's label.
* **Suggest labels**: :func:`napari_leukemia.labels.suggest_labels` in a worker thread
  gives a draft layer ``"suggested labels · <image>"`` to correct with the brush. Running
  it again replaces only the plugin's own earlier draft while it is unedited; a draft
  the user painted on, and any layer the user made, are kept (the new draft gets a
  fresh name).
* **Save / Load**: PNG or TIFF with the names inside the file
  (:func:`~napari_leukemia.labels.save_labels` / ``load_labels``). An existing file is
  only replaced after the user confirms (:meth:`MorphologyLabelsWidget.save` refuses it
  unless ``overwrite=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import (
    Container,
    FileEdit,
    LineEdit,
    ProgressBar,
    PushButton,
    create_widget,
)
from napari.utils.notifications import show_error, show_info

from .. import layer_metadata
from ..images import ImageError
from ..labels import MORPHOLOGY_CLASSES, MORPHOLOGY_COLORS, LabelsError
from .layers import image_plane, placement
from .workers import run_in_worker, status_label

if TYPE_CHECKING:
    import napari

MORPHOLOGY_KIND = layer_metadata.MORPHOLOGY
SUGGESTED_KIND = layer_metadata.SUGGESTED

#: Colours for classes users add, chosen to differ from the morphology colours
#: (Okabe-Ito / Tableau hues; cycled when there are more classes).
CUSTOM_COLORS: tuple[tuple[float, float, float, float], ...] = (
    (0.00, 0.62, 0.45, 1.0),  # bluish green
    (0.90, 0.62, 0.00, 1.0),  # orange
    (0.80, 0.47, 0.65, 1.0),  # reddish purple
    (0.94, 0.89, 0.26, 1.0),  # yellow
    (0.00, 0.45, 0.70, 1.0),  # blue
    (0.55, 0.34, 0.29, 1.0),  # brown
    (0.09, 0.75, 0.81, 1.0),  # cyan
    (0.55, 0.85, 0.30, 1.0),  # light green
)

#: Colour of values that have no name (painted with a value no class has): light grey.
UNNAMED_COLOR = (0.75, 0.75, 0.75, 1.0)


# --------------------------------------------------------------------------- helpers


def class_color(value: int) -> tuple[float, float, float, float]:
    """The colour of a label value: morphology colours, then the custom palette."""
    if value in MORPHOLOGY_COLORS:
        return MORPHOLOGY_COLORS[value]
    return CUSTOM_COLORS[(value - len(MORPHOLOGY_COLORS) - 1) % len(CUSTOM_COLORS)]


def labels_layer_kwargs(names: Mapping[int, str], name: str, **extra) -> dict[str, Any]:
    """Labels-layer keyword arguments: a fixed colour per value and a names table.

    Value 0 (not labelled) is transparent; values without a name are light grey.
    """
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, Any] = {None: np.asarray(UNNAMED_COLOR), 0: "transparent"}
    values = sorted(int(v) for v in names if int(v) != 0)
    color_dict.update({v: np.asarray(class_color(v)) for v in values})
    features = pd.DataFrame({"index": values, "name": [str(names[v]) for v in values]})
    return {
        "name": name,
        "opacity": 0.5,
        "colormap": DirectLabelColormap(color_dict=color_dict),
        "features": features,
        **extra,
    }


def layer_label_names(layer) -> dict[int, str]:
    """Value → name from a Labels layer's ``features`` (``index`` and ``name`` columns).

    Layers without such a table get an empty dict (callers fall back to the morphology
    classes).
    """
    features = getattr(layer, "features", None)
    if features is None or "name" not in features or len(features) == 0:
        return {}
    index = features["index"] if "index" in features else pd.Series(range(len(features)))
    out = {}
    for value, name in zip(index, features["name"], strict=True):
        if pd.isna(value) or pd.isna(name):
            continue
        out[int(value)] = str(name)
    return out


def add_class(layer, name: str, color=None) -> int:
    """Add a named class to a Labels layer; returns its value (the next free one).

    The next free value is one more than the largest of: the values already named in
    ``features``, the values in the colormap and the values painted.
    """
    from napari.utils.colormaps import DirectLabelColormap

    name = str(name).strip()
    if not name:
        raise ValueError("Type a name for the new class first.")
    names = layer_label_names(layer)
    if name in names.values():
        raise ValueError(f"'{layer.name}' already has a class named '{name}'.")
    used = [0, *names]
    cmap = layer.colormap
    if isinstance(cmap, DirectLabelColormap):
        used.extend(int(k) for k in cmap.color_dict if k is not None)
    data = np.asarray(layer.data)
    if data.size:
        used.append(int(data.max()))
    value = max(used) + 1
    if np.issubdtype(data.dtype, np.integer) and value > np.iinfo(data.dtype).max:
        raise ValueError(
            f"'{layer.name}' holds {data.dtype} values; {value} does not fit. Convert the "
            "layer's data to a wider integer type first."
        )
    rgba = np.asarray(class_color(value) if color is None else color, dtype=float)
    if isinstance(cmap, DirectLabelColormap):
        color_dict = dict(cmap.color_dict)
    else:  # e.g. napari's cyclic colours: keep every painted value's current colour
        painted = [int(v) for v in np.unique(data) if v != 0]
        colors = cmap.map(np.array(painted, dtype=data.dtype)) if painted else []
        color_dict = {v: np.asarray(c) for v, c in zip(painted, colors, strict=True)}
        color_dict[None] = np.asarray(UNNAMED_COLOR)
    color_dict.setdefault(None, np.asarray(UNNAMED_COLOR))
    color_dict[0] = "transparent"
    color_dict[value] = rgba
    layer.colormap = DirectLabelColormap(color_dict=color_dict)
    names[value] = name
    values = sorted(names)
    layer.features = pd.DataFrame({"index": values, "name": [names[v] for v in values]})
    layer.selected_label = value
    return value


def _mark_edits(layer) -> None:
    """Record in the layer's metadata that the user painted on it (kept from now on)."""

    def edited(*_):
        layer_metadata.update(layer, edited=True)

    layer.events.paint.connect(edited)
    layer.events.data.connect(edited)


def _suggest(plane):
    from ..labels import suggest_labels

    return suggest_labels(plane)


def _ask_overwrite(path: Path) -> bool:
    """Ask the user whether to replace an existing file (Qt dialog)."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        None,
        "Replace file?",
        f"{path} already exists.\nReplace it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


# --------------------------------------------------------------------------- widget


class MorphologyLabelsWidget(Container):
    """Create, draft, extend, save and load named morphology label layers."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.new_button = PushButton(text="New morphology labels")
        self.suggest_button = PushButton(text="Suggest labels")
        self.progress = ProgressBar(min=0, max=0, visible=False, label="")
        self.labels = create_widget(annotation="napari.layers.Labels", label="labels")
        self.class_name = LineEdit(label="new class", tooltip="name of a class to add")
        self.add_class_button = PushButton(text="Add class")
        self.save_path = FileEdit(
            mode="w", filter="*.png *.tif *.tiff", label="save to", tooltip=".png or .tif"
        )
        self.save_button = PushButton(text="Save…")
        self.load_path = FileEdit(mode="r", filter="*.png *.tif *.tiff", label="load from")
        self.load_button = PushButton(text="Load…")
        self.message = status_label("")
        self.extend(
            [
                self.image,
                self.new_button,
                self.suggest_button,
                self.progress,
                self.labels,
                self.class_name,
                self.add_class_button,
                self.save_path,
                self.save_button,
                self.load_path,
                self.load_button,
                self.message,
            ]
        )
        self.new_button.changed.connect(self.new_labels)
        self.suggest_button.changed.connect(self.suggest)
        self.add_class_button.changed.connect(self._add_class_clicked)
        self.save_button.changed.connect(self._save_clicked)
        self.load_button.changed.connect(self._load_clicked)
        #: asks "replace?" for an existing file; tests replace it
        self.confirm_overwrite = _ask_overwrite
        self.worker = None

    # ---------------------------------------------------------------- messages

    def _tell(self, text: str, error: bool = False) -> None:
        self.message.value = text
        (show_error if error else show_info)(text)

    def _image_or_complain(self, action: str):
        layer = self.image.value
        if layer is None:
            self._tell(f"{action}: choose an image layer first.", error=True)
        return layer

    # ---------------------------------------------------------------- new layer

    def new_labels(self, *_):
        """Add an empty morphology Labels layer the size of the chosen image."""
        image = self._image_or_complain("New morphology labels")
        if image is None:
            return None
        data = np.asarray(image.data)
        rows, cols = data.shape[-3:-1] if image.rgb else data.shape[-2:]
        kwargs = labels_layer_kwargs(
            MORPHOLOGY_CLASSES,
            f"morphology labels · {image.name}",
            metadata={
                layer_metadata.PLUGIN_KEY: {
                    "kind": MORPHOLOGY_KIND,
                    "image_layer": image.name,
                    "image_shape": [int(rows), int(cols)],
                }
            },
            **placement(image),
        )
        layer = self._viewer.add_labels(np.zeros((rows, cols), dtype=np.int32), **kwargs)
        layer.selected_label = 1
        self.labels.value = layer
        self._viewer.layers.selection.active = layer
        self.message.value = f"Added '{layer.name}': paint with the brush (1 = nucleus)."
        return layer

    # ---------------------------------------------------------------- custom class

    def _add_class_clicked(self, *_):
        layer = self.labels.value
        if layer is None:
            self._tell("Add class: choose (or create) a labels layer first.", error=True)
            return None
        try:
            value = add_class(layer, self.class_name.value)
        except ValueError as error:
            self._tell(f"Add class: {error}", error=True)
            return None
        self.message.value = (
            f"Class {value} '{self.class_name.value.strip()}' added to '{layer.name}'."
        )
        self.class_name.value = ""
        return value

    # ---------------------------------------------------------------- suggestion

    def suggest(self, *_):
        """Compute a draft with suggest_labels in a worker thread."""
        image = self._image_or_complain("Suggest labels")
        if image is None:
            return
        try:
            plane = image_plane(image, self._viewer)
        except ImageError as error:
            self._tell(f"Suggest labels for '{image.name}': {error}", error=True)
            return
        self.message.value = f"Drafting labels for '{image.name}'…"
        self.worker = run_in_worker(
            _suggest,
            plane,
            action="Suggest labels",
            button=self.suggest_button,
            progress=self.progress,
            status=self.message,
            on_returned=lambda draft: self._show_suggestion(draft, image),
        )

    def _show_suggestion(self, draft: np.ndarray, image):
        """Add the draft; replace only the plugin's earlier, not yet edited draft."""
        for old in list(self._viewer.layers):
            meta = layer_metadata.read(old)
            if (
                meta.get("kind") == SUGGESTED_KIND
                and meta.get("image_layer") == image.name
                and not meta.get("edited", False)
            ):
                self._viewer.layers.remove(old)
        meta = {
            "kind": SUGGESTED_KIND,
            "image_layer": image.name,
            "image_shape": [int(s) for s in draft.shape],
            "edited": False,
        }
        kwargs = labels_layer_kwargs(
            MORPHOLOGY_CLASSES,
            f"suggested labels · {image.name}",
            metadata={layer_metadata.PLUGIN_KEY: meta},
            **placement(image),
        )
        layer = self._viewer.add_labels(draft.astype(np.int32), **kwargs)
        _mark_edits(layer)
        self.labels.value = layer
        self.message.value = f"'{layer.name}' is a draft: correct it with the brush, then save it."

    # ---------------------------------------------------------------- files

    def save(self, path, overwrite: bool = False, layer=None) -> Path:
        """Save a labels layer (default: the chosen one) with its class names.

        Raises `FileExistsError` for an existing file unless `overwrite` is true, and
        `LabelsError` / `ValueError` for data that cannot be saved.
        """
        from ..labels import save_labels

        layer = self.labels.value if layer is None else layer
        if layer is None:
            raise ValueError("Choose a labels layer to save.")
        names = layer_label_names(layer) or None
        return save_labels(path, image_plane(layer, self._viewer), names, overwrite=overwrite)

    def _chosen_path(self, widget) -> Path | None:
        value = widget.value
        if value is None or str(value).strip() in ("", ".") or Path(value).is_dir():
            return None
        return Path(value)

    def _save_clicked(self, *_):
        path = self._chosen_path(self.save_path)
        if path is None:
            self._tell("Save labels: choose a file name (.png or .tif) first.", error=True)
            return None
        overwrite = False
        if path.exists():
            if not self.confirm_overwrite(path):
                self._tell(f"Not saved: {path.name} exists and was left unchanged.")
                return None
            overwrite = True
        try:
            written = self.save(path, overwrite=overwrite)
        except (FileExistsError, LabelsError, ValueError, OSError) as error:
            self._tell(f"Save labels: {error}", error=True)
            return None
        self._tell(f"Saved '{self.labels.value.name}' to {written}.")
        return written

    def load(self, path):
        """Load a label file as a new Labels layer with its names and colours.

        The layer is placed like the chosen image when their shapes match.
        """
        from ..labels import load_labels

        path = Path(path)
        data, names = load_labels(path)
        names = {**{int(v): n for v, n in names.items()}}
        meta: dict[str, Any] = {
            "kind": MORPHOLOGY_KIND,
            layer_metadata.SOURCE_FILE: str(path),
            "image_shape": [int(s) for s in data.shape],
        }
        extra: dict[str, Any] = {}
        image = self.image.value
        if image is not None:
            shape = np.asarray(image.data).shape
            rows_cols = shape[-3:-1] if image.rgb else shape[-2:]
            if tuple(rows_cols) == data.shape:
                extra = placement(image)
                meta["image_layer"] = image.name
            else:
                show_info(
                    f"{path.name} is {data.shape[0]}x{data.shape[1]} but '{image.name}' is "
                    f"{rows_cols[0]}x{rows_cols[1]}: the labels were not placed on it."
                )
        kwargs = labels_layer_kwargs(names, f"{path.stem} (labels)", **extra)
        dtype = np.int32 if data.dtype.itemsize < 4 else data.dtype
        metadata = {layer_metadata.PLUGIN_KEY: meta}
        layer = self._viewer.add_labels(data.astype(dtype), metadata=metadata, **kwargs)
        self.labels.value = layer
        return layer

    def _load_clicked(self, *_):
        path = self._chosen_path(self.load_path)
        if path is None:
            self._tell("Load labels: choose a .png or .tif label file first.", error=True)
            return None
        try:
            layer = self.load(path)
        except (FileNotFoundError, LabelsError, OSError, ValueError) as error:
            self._tell(f"Load labels: {error}", error=True)
            return None
        names = ", ".join(layer_label_names(layer).values())
        self._tell(f"Loaded '{layer.name}' ({names}).")
        return layer
