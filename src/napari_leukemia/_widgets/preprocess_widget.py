"""Preprocess widget: one preprocessing step on an image layer, result as a new layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton, SpinBox, create_widget
from napari.utils.notifications import show_error

from .. import layer_metadata, preprocess
from ..images import ImageError
from .layers import add_or_replace, image_plane, placement

if TYPE_CHECKING:
    import napari

STEPS = (
    "document 000 pipeline",
    "grayscale",
    "normalize (min-max)",
    "normalize (percentiles)",
    "unsharp mask",
)


def run_step(data: np.ndarray, step: str, **params) -> np.ndarray:
    """Apply one named preprocessing step to a 2-D plane."""
    if step == "grayscale":
        return preprocess.grayscale(data)
    if step == "normalize (min-max)":
        return preprocess.normalize(data, "minmax")
    if step == "normalize (percentiles)":
        return preprocess.normalize(data, "percentile", params["low"], params["high"])
    if step == "unsharp mask":
        return preprocess.unsharp_mask(
            data,
            params["image_weight"],
            params["blur_weight"],
            params["kernel_size"],
            params["sigma"],
        )
    if step == "document 000 pipeline":
        return preprocess.document000_pipeline(data)[..., 0]
    raise ValueError(f"Unknown step {step!r}; choose one of {STEPS}.")


class PreprocessWidget(Container):
    """Apply a step to the chosen image; each run adds a layer, the input is never edited."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_widget(annotation="napari.layers.Image", label="image")
        self.step = ComboBox(choices=STEPS, value=STEPS[0], label="step")
        self.image_weight = FloatSpinBox(value=1.5, min=-5, max=5, step=0.1, label="image weight")
        self.blur_weight = FloatSpinBox(value=-0.2, min=-5, max=5, step=0.1, label="blur weight")
        self.kernel_size = SpinBox(value=5, min=1, max=31, step=2, label="kernel size")
        self.sigma = FloatSpinBox(
            value=0.0,
            min=0,
            max=20,
            step=0.1,
            label="sigma",
            tooltip="0 = derived from the kernel size, as OpenCV does",
        )
        self.low = FloatSpinBox(value=1.0, min=0, max=100, label="low percentile")
        self.high = FloatSpinBox(value=99.0, min=0, max=100, label="high percentile")
        self.apply = PushButton(text="Apply")
        self.extend(
            [
                self.image,
                self.step,
                self.image_weight,
                self.blur_weight,
                self.kernel_size,
                self.sigma,
                self.low,
                self.high,
                self.apply,
            ]
        )
        self.apply.changed.connect(self.run)
        self.step.changed.connect(self._show_relevant_parameters)
        self._show_relevant_parameters()

    def _show_relevant_parameters(self, *_):
        unsharp = self.step.value == "unsharp mask"
        percentiles = self.step.value == "normalize (percentiles)"
        for widget in (self.image_weight, self.blur_weight, self.kernel_size, self.sigma):
            widget.visible = unsharp
        self.low.visible = self.high.visible = percentiles

    def run(self, *_):
        """Add the step's result as a new layer aligned with its source; returns it."""
        layer = self.image.value
        if layer is None:
            show_error("Choose an image layer to preprocess.")
            return None
        step = self.step.value
        try:
            plane = image_plane(layer, self._viewer)
            result = run_step(
                plane,
                step,
                image_weight=self.image_weight.value,
                blur_weight=self.blur_weight.value,
                kernel_size=self.kernel_size.value,
                sigma=self.sigma.value,
                low=self.low.value,
                high=self.high.value,
            )
        except (ImageError, ValueError) as error:
            show_error(f"Preprocess '{layer.name}': {error}")
            return None
        where = placement(layer)
        if result.shape[:2] != plane.shape[:2]:  # resized by the pipeline: stretch back
            factor = np.asarray(plane.shape[:2]) / np.asarray(result.shape[:2])
            scale = np.asarray(where["scale"]) * factor
            translate = np.asarray(where["translate"]) + (scale - np.asarray(where["scale"])) / 2
            where = {"scale": tuple(scale), "translate": tuple(translate)}
        kwargs = {"name": f"{layer.name} · {step}", **where}
        if result.ndim == 2:
            kwargs.update(colormap="gray", contrast_limits=(0.0, 1.0))
        meta = {"kind": layer_metadata.PREPROCESSED, "step": step, "image_layer": layer.name}
        return add_or_replace(self._viewer, result, kwargs, meta)
