"""Classify cell widget: class probabilities of the selected cell (or the whole field)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    Container,
    ProgressBar,
    PushButton,
    create_widget,
)
from napari.utils.notifications import show_error, show_warning

from .. import layer_metadata
from ..images import ImageError
from . import selection
from .layers import chosen_model_path, image_plane, model_file_edit
from .workers import preload_model, run_in_worker, status_label, waiting_message

if TYPE_CHECKING:
    import napari


def classify_plane(plane, model_path: Path | None, bbox):
    """Load the model (cached) and classify; runs in a worker thread."""
    from ..model.classify import classify, load_model

    return classify(plane, load_model(model_path), bbox=bbox)


def _familiarity_line(result) -> str:
    """A line under the call saying whether the input is like the training cells."""
    if result.unfamiliar is None:
        return ""
    if result.unfamiliar:
        return (
            "<br><b>Unlike the cells the model was trained on</b> "
            f"(OOD score {result.ood_score:.0f} &gt; {result.ood_threshold:.0f}): "
            "do not trust this call"
        )
    score, threshold = result.ood_score, result.ood_threshold
    return f"<br>Like the training cells (OOD score {score:.0f} ≤ {threshold:.0f})"


def record_result(result, image_layer, cell: selection.SelectedCell | None) -> dict:
    """Store the result where the console can read it; returns the stored record.

    The image layer's ``metadata["napari_leukemia"]["classification"]`` gets the last
    result; a classified cell also gets ``class`` and one ``P(<class>)`` column per
    class in its cells layer's ``features`` (and ``OOD score`` when the model has one).
    """
    record = {**result.as_dict(), "cell": None if cell is None else cell.cell_id}
    layer_metadata.update(image_layer, classification=record)
    if cell is not None:
        features = cell.cells_layer.features
        if "class" not in features:
            features["class"] = ""
        features.loc[cell.index, "class"] = result.class_name
        for name, probability in result.probabilities.items():
            column = f"P({name})"
            if column not in features:
                features[column] = float("nan")
            features.loc[cell.index, column] = round(probability, 4)
        if result.ood_score is not None:
            if "OOD score" not in features:
                features["OOD score"] = float("nan")
            features.loc[cell.index, "OOD score"] = round(result.ood_score, 1)
        cell.cells_layer.features = features
    return record


class ClassifyWidget(Container):
    """Classify the selected cell's ROI, or the whole image when no cell is selected."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.use_cell = CheckBox(value=True, text="selected cell only")
        self.model_file = model_file_edit()
        self.run_button = PushButton(text="Classify")
        self.progress = ProgressBar(min=0, max=0, visible=False, label="")
        self.call = status_label("")
        self.bars = {}
        self.extend(
            [self.image, self.use_cell, self.model_file, self.run_button, self.progress, self.call]
        )
        self.run_button.changed.connect(self.run)
        self.worker = None
        self.last_record: dict | None = None
        preload_model(self._model_path())

    def _model_path(self) -> Path | None:
        return chosen_model_path(self.model_file)

    def run(self, *_):
        """Start classification in a worker thread."""
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to classify.")
            return
        cell = selection.selected_cell(self._viewer, layer) if self.use_cell.value else None
        try:
            plane = image_plane(layer, self._viewer)
        except ImageError as error:
            show_error(f"Classify '{layer.name}': {error}")
            return
        self.call.value = waiting_message(self._model_path(), "Classifying…")
        self.worker = run_in_worker(
            classify_plane,
            plane,
            self._model_path(),
            None if cell is None else cell.bbox,
            action="Classification",
            button=self.run_button,
            progress=self.progress,
            status=self.call,
            on_returned=lambda result: self._show(result, layer, cell),
        )

    def _show(self, result, layer, cell):
        self.last_record = record_result(result, layer, cell)
        where = cell.label if cell is not None else result.kind
        verdict = {True: "MALIGNANT", False: "benign", None: "unknown: no benign class"}[
            result.malignant
        ]
        if result.cell_found is False:  # no call to read: say so first, the output muted
            self.call.value = (
                f"<b>No white cell in this box</b> — {where}: the model's output is not a "
                f"call on a cell; do not trust it<br><i>(output: {result.class_name}, "
                f"P(malignant) = {result.malignant_probability:.3f})</i>"
            )
        else:
            self.call.value = (
                f"<b>{result.class_name}</b> — {where}<br>"
                f"P(malignant) = {result.malignant_probability:.3f} ({verdict})"
                + _familiarity_line(result)
            )
        for name, probability in result.probabilities.items():
            if name not in self.bars:
                self.bars[name] = ProgressBar(min=0, max=100, label=name)
                self.append(self.bars[name])
            self.bars[name].value = int(round(probability * 100))
        for note in result.notes:
            show_warning(note)
