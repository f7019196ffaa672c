"""Explain widget: attribution maps of the selected cell (or the whole field) as layers.

The widget only gathers inputs and shows results: the maps come from
`napari_leukemia.explain.explain_full`, run in a worker thread (one method at a time,
so the progress bar advances per map and the viewer stays responsive). Each map is an
Image layer with the source image's rows, columns, scale and translate (the engine
places ROI maps back onto the image, 0 outside the ROI), named
``"<method> · <class> · cell N"`` (or ``"· field"``), with
``metadata["napari_leukemia"]`` of kind ``"attribution"``. Re-running replaces the
plugin's own map for the same method, class, cell and image (found by that metadata,
so a user's layer of the same name is never touched). "Side by side" shows the last
explanation's maps in named panels over the image, zoomed on the cell (`side_by_side`).

TensorFlow is imported on the first run, in the worker, with `import_tensorflow`
(see there: a plain import after napari's OpenGL context exists can crash the process).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    create_widget,
)
from napari.utils.notifications import show_error, show_info, show_warning

from .. import layer_metadata
from ..explain.methods import METHODS
from ..images import ImageError
from ..model.backend import import_tensorflow
from . import selection
from .colormaps import POSITIVE_COLORMAP, SIGNED_COLORMAP
from .layers import (
    chosen_model_path,
    image_plane,
    keep_below,
    model_file_edit,
    placement,
    update_in_place,
)
from .side_by_side import SideBySide
from .workers import preload_model, run_in_worker, status_label, waiting_message

if TYPE_CHECKING:
    import napari

KIND = layer_metadata.ATTRIBUTION
PREDICTED = "predicted"
DEFAULT_METHODS = ("gradient_x_input", "lrp_epsilon", "grad_cam")


def explain_methods(plane, model_path: Path | None, target, bbox, jobs):
    """Worker body: load the model (cached), then explain with one method per step.

    Yields ``("model", class_names)`` once, then ``("map", method, Explanation)`` or
    ``("error", method, message)`` per method: one method failing (e.g. LRP on a layer
    it cannot explain) does not stop the others. A model that cannot be loaded raises.
    """
    from ..explain import explain_full
    from ..model.classify import load_model

    import_tensorflow()
    loaded = load_model(model_path)
    yield ("model", list(loaded.class_names))
    for method, params in jobs:
        try:
            result = explain_full(plane, method, loaded, target, bbox=bbox, **params)
        except Exception as error:  # noqa: BLE001 - reported per method, others go on
            yield ("error", method, str(error) or type(error).__name__)
            continue
        yield ("map", method, result)


def layer_name(label: str, target_name: str, where: str) -> str:
    """``"LRP-ε · Pre-B · cell 3"``."""
    return f"{label} · {target_name} · {where}"


def display_kwargs(result) -> dict:
    """Colormap, contrast limits and blending of an attribution map layer.

    Signed maps: diverging colormap, transparent at 0, limits (−m, m) with m = max|map|.
    Non-negative maps: sequential colormap from transparent, limits (0, m).
    """
    extent = float(np.max(np.abs(result.map)))
    extent = extent if extent > 0 else 1.0
    if result.signed:
        colormap, limits = SIGNED_COLORMAP, (-extent, extent)
    else:
        colormap, limits = POSITIVE_COLORMAP, (0.0, extent)
    return {
        "colormap": colormap,
        "contrast_limits": limits,
        "blending": "translucent",
        "opacity": 1.0,  # the colormap's own alpha (at most MAX_ALPHA) does the fading
        "interpolation2d": "nearest",
    }


def layer_meta(result, method: str, source: str, cell, model_path) -> dict:
    """What is recorded on an attribution layer (``metadata["napari_leukemia"]``)."""
    meta = {
        "kind": KIND,
        "method": method,
        "method_label": METHODS[method].label,
        "target": result.target_name,
        "target_index": int(result.target),
        "cell": None if cell is None else cell.cell_id,
        "bbox": None if result.bbox is None else [int(v) for v in result.bbox],
        "logit": float(result.logit),
        "predicted": result.predicted,
        "probabilities": dict(result.probabilities),
        "signed": bool(result.signed),
        "notes": list(result.notes),
        layer_metadata.IMAGE_LAYER: source,
        "model": "bundled" if model_path is None else str(model_path),
        "params": {k: v for k, v in result.params.items() if _plain(v)},
    }
    if result.layer is not None:
        meta["layer"] = result.layer
    if result.transform is not None:
        meta[layer_metadata.ROI_TRANSFORM] = result.transform.as_dict()
        meta[layer_metadata.ROI_MAP] = np.asarray(result.input_map, np.float32)
    return meta


def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def form_field(param):
    """The form widget of one method parameter, as its `Param` describes it."""
    shown = param.none_as if param.default is None else param.default
    tooltip = param.doc
    if param.default is None:
        tooltip += f" ({'empty' if param.none_as == '' else param.none_as} = automatic)"
    if param.widget == "text":
        return LineEdit(value=str(shown), label=param.label, tooltip=tooltip)
    if param.widget == "int":
        return SpinBox(
            value=int(shown),
            min=int(param.low),
            max=int(param.high),
            step=int(param.step or 1),
            label=param.label,
            tooltip=tooltip,
        )
    if param.widget == "float":
        box = FloatSpinBox(
            value=float(shown),
            min=param.low,
            max=param.high,
            step=param.step,
            label=param.label,
            tooltip=tooltip,
        )
        # a range over several decades (ε) steps by a tenth of the value, not a fixed step
        box.adaptive_step = param.low > 0 and param.high >= 100 * param.low
        return box
    raise ValueError(f"Parameter {param.name!r} has no form widget kind {param.widget!r}.")


def form_value(param, field_widget):
    """A form field's value as the parameter takes it (int, float or stripped text)."""
    value = field_widget.value
    if param.widget == "text":
        return str(value).strip()
    return int(value) if param.widget == "int" else float(value)


def _class_names_without_tf(model_path: Path | None) -> list[str]:
    """Class names from the metadata file beside the model (no TensorFlow needed).

    A model without metadata gets the plugin's four classes here; the loaded model's
    own names replace them after the first run.
    """
    from ..model.classify import bundled_model_path
    from ..model.metadata import CLASS_NAMES, read_info

    try:
        info = read_info(bundled_model_path() if model_path is None else model_path)
    except Exception:  # noqa: BLE001 - unreadable metadata: the loader will say why
        info = None
    return list(info.class_names) if info is not None else list(CLASS_NAMES)


class ExplainWidget(Container):
    """Attribution maps of the selected cell (or the whole field) as image layers."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.use_cell = CheckBox(
            value=True,
            text="selected cell only",
            tooltip="explain the selected cell's ROI; untick for the whole field",
        )
        self.model_file = model_file_edit()
        self.target = ComboBox(
            label="target",
            choices=[PREDICTED, *_class_names_without_tf(None)],
            value=PREDICTED,
            tooltip="the class whose score (pre-softmax logit) is explained",
        )
        self.methods = Select(
            label="methods",
            choices=[(info.label, method) for method, info in METHODS.items()],
            value=list(DEFAULT_METHODS),
            allow_multiple=True,
            tooltip="\n".join(
                f"{info.label}: {info.summary} ({info.reference})" for info in METHODS.values()
            ),
        )
        self.methods.native.setMinimumHeight(120)
        self._build_params()
        self.run_button = PushButton(text="Explain")
        self.progress = ProgressBar(min=0, max=1, value=0, visible=False, label="")
        self.status = status_label("")
        self.grid_button = PushButton(
            text="Side by side",
            tooltip=(
                "Each map of the last explanation in its own named panel, over the image, "
                "all zoomed on the explained cell; press again to go back to the overlay."
            ),
        )
        self.side_by_side = SideBySide(viewer)
        self.extend(
            [
                self.image,
                self.use_cell,
                self.model_file,
                self.target,
                self.methods,
                *self._param_rows.values(),
                self.run_button,
                self.progress,
                self.status,
                self.grid_button,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.grid_button.changed.connect(self.toggle_grid)
        self.methods.changed.connect(self._update_params)
        self.model_file.changed.connect(self._refresh_targets)
        self._update_params()
        self.worker = None
        self.running = False
        self.last_layers: list = []
        self.last_window = None  # (image layer, (top, left, bottom, right)) for the grid
        self._told: set[str] = set()
        preload_model(self._model_path())

    # -- form ----------------------------------------------------------------------
    def _build_params(self) -> None:
        """One row of fields per method form of the method table (`MethodInfo.form_params`),
        shown only while one of its methods is selected; methods with the same
        `form_owner` (Grad-CAM, Grad-CAM++) share a row."""
        self.fields: dict[tuple[str, str], object] = {}
        self._param_rows: dict[tuple[str, ...], Container] = {}
        owners: dict[str, list[str]] = {}
        for method, info in METHODS.items():
            if info.form_params:
                owners.setdefault(info.form_owner, []).append(method)
        for owner, methods in owners.items():
            widgets = []
            for param in METHODS[owner].form_params:
                field_widget = form_field(param)
                self.fields[(owner, param.name)] = field_widget
                widgets.append(field_widget)
            docs = [p.doc for m in methods for p in METHODS[m].form_params]
            box = Container(
                widgets=widgets,
                layout="horizontal",
                label=METHODS[owner].label,
                labels=True,
                tooltip="\n".join(dict.fromkeys(docs)),
            )
            box.margins = (0, 0, 0, 0)
            self._param_rows[tuple(methods)] = box

    def _update_params(self, *_) -> None:
        chosen = set(self.methods.value or ())
        for methods, box in self._param_rows.items():
            box.visible = bool(chosen.intersection(methods))

    def field(self, method: str, name: str):
        """The form field of `method`'s parameter `name` (shared by its form group)."""
        return self.fields[(METHODS[method].form_owner, name)]

    def params_for(self, method: str) -> dict:
        """The parameters the form gives `method` (engine defaults for the rest); a field
        left at its "automatic" value (`Param.none_as`) is not passed."""
        params = {}
        for param in METHODS[method].form_params:
            value = form_value(param, self.field(method, param.name))
            if param.default is None and value == param.none_as:
                continue
            params[param.name] = value
        return params

    def _model_path(self) -> Path | None:
        return chosen_model_path(self.model_file)

    def _refresh_targets(self, *_, names: list[str] | None = None) -> None:
        """Target choices: "predicted" and the model's classes; keep the choice if valid."""
        if names is None:
            names = _class_names_without_tf(self._model_path())
        current = self.target.value
        self.target.choices = [PREDICTED, *names]
        self.target.value = current if current in self.target.choices else PREDICTED

    # -- run -----------------------------------------------------------------------
    def run(self, *_):
        """Explain the chosen image / cell with every chosen method, in a worker thread."""
        if self.running:
            return
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to explain.")
            return
        methods = [m for m in METHODS if m in (self.methods.value or ())]
        if not methods:
            show_error("Choose at least one attribution method.")
            return
        cell = selection.selected_cell(self._viewer, layer) if self.use_cell.value else None
        if self.use_cell.value and cell is None:
            show_info(
                f"No cell is selected on '{layer.name}': explaining the whole field. Detect "
                "cells and click one to explain a single cell."
            )
        try:
            plane = image_plane(layer, self._viewer)
        except ImageError as error:
            show_error(f"Explain '{layer.name}': {error}")
            return
        target = None if self.target.value == PREDICTED else self.target.value
        jobs = [(m, self.params_for(m)) for m in methods]
        model_path = self._model_path()
        context = {"layer": layer, "cell": cell, "model_path": model_path}
        if self.side_by_side.active:  # new maps come back to the overlay view
            self.toggle_grid()
        self.running = True
        self.last_layers = []
        self._told = set()
        self.progress.max = 0  # busy until the model is loaded
        self.progress.value = 0
        self.status.value = waiting_message(model_path, "Loading the model…")
        self.worker = run_in_worker(
            explain_methods,
            plane,
            model_path,
            target,
            None if cell is None else cell.bbox,
            jobs,
            action="Explain",
            button=self.run_button,
            progress=self.progress,
            status=self.status,
            total=len(jobs) + 1,
            on_yielded=lambda item: self._on_yielded(item, context, len(jobs)),
            on_done=self._done,
        )

    def _on_yielded(self, item, context, n_methods: int) -> None:
        kind = item[0]
        if kind == "model":
            self._refresh_targets(names=item[1])
            self.progress.max = n_methods
            self.progress.value = 0
            self.status.value = f"Explaining 0/{n_methods}…"
            return
        self.progress.value = min(self.progress.value + 1, self.progress.max)
        self.status.value = f"Explaining {self.progress.value}/{n_methods}…"
        method = item[1]
        if kind == "error":
            self._report_error(method, item[2])
        else:
            self._show(method, item[2], context)

    def _report_error(self, method: str, message: str) -> None:
        if message in self._told:
            return  # e.g. an unknown target fails every method with the same message
        self._told.add(message)
        show_error(f"{METHODS[method].label}: {message}")

    def _own_layers(self, method: str, target_name: str, cell, source: str) -> list:
        """The plugin's earlier maps for this method, target, cell and image."""
        cell_id = None if cell is None else cell.cell_id
        found = []
        for lay in self._viewer.layers:
            meta = layer_metadata.read(lay)
            if (
                meta.get("kind") == KIND
                and meta.get("method") == method
                and meta.get("target") == target_name
                and meta.get("cell") == cell_id
                and meta.get(layer_metadata.IMAGE_LAYER) == source
            ):
                found.append(lay)
        return found

    def _show(self, method: str, result, context) -> None:
        layer, cell = context["layer"], context["cell"]
        label = METHODS[method].label
        where = cell.label if cell is not None else "field"
        name = layer_name(label, result.target_name, where)
        if layer not in self._viewer.layers:
            show_warning(f"'{layer.name}' was removed; the {name} map was not added.")
            return
        # re-running updates the plugin's own map in place (found by its metadata, not
        # its name, so a user's layer called the same is never touched)
        old = self._own_layers(method, result.target_name, cell, layer.name)
        if result.empty:
            for lay in old:
                self._viewer.layers.remove(lay)
            reason = result.notes[-1] if result.notes else "The map is all zero."
            removed = " (its earlier layer was removed)" if old else ""
            show_warning(f"{label} · {where}: no layer added{removed}. {reason}")
            return
        for note in result.notes:
            if note not in self._told:
                self._told.add(note)
                show_info(f"{label}: {note}")
        meta = layer_meta(result, method, layer.name, cell, context["model_path"])
        kwargs = {
            "name": name,
            "metadata": {layer_metadata.PLUGIN_KEY: meta},
            **display_kwargs(result),
            **placement(layer),
        }
        for extra in old[1:]:
            self._viewer.layers.remove(extra)
        if old and update_in_place(old[0], result.map, kwargs):
            new = old[0]
        else:
            new = self._viewer.add_image(result.map, **kwargs)
        if cell is not None:  # the cell boxes and numbers stay visible over the maps
            keep_below(self._viewer, new, cell.cells_layer)
        self.last_layers.append(new)
        if result.transform is not None:
            (top, left), (sr, sc) = result.transform.origin, result.transform.scale
            rows, cols = result.input_map.shape
            self.last_window = (layer, (top, left, top + sr * rows, left + sc * cols))

    def _done(self) -> None:
        self.running = False
        if not self.status.value.startswith("Failed"):
            added = ", ".join(lay.name for lay in self.last_layers) or "no map"
            self.status.value = f"Added: {added}"

    # -- side by side --------------------------------------------------------------
    def toggle_grid(self, *_) -> None:
        """Side by side on/off: the last explanation's maps, each in a named panel over
        its cell, zoomed on the explained cell (see `side_by_side`)."""
        if self.side_by_side.active:
            self.side_by_side.leave()
        else:
            maps = [lay for lay in self.last_layers if lay in self._viewer.layers]
            image, window = self.last_window if self.last_window else (None, None)
            if image is None and maps:
                name = layer_metadata.image_layer_of(maps[0])
                image = next((lay for lay in self._viewer.layers if lay.name == name), None)
            if not self.side_by_side.enter(maps, image, window):
                show_info("Side by side: explain a cell first; its maps are shown side by side.")
        self.grid_button.text = "Overlay" if self.side_by_side.active else "Side by side"
