"""Preprocess widget: one preprocessing step on an image layer, result as a new layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui import magic_factory
from napari.utils.notifications import show_error

from .. import preprocess
from ..images import ImageError
from .layers import image_plane, placement

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


@magic_factory(
    step={"choices": STEPS},
    image_weight={"min": -5.0, "max": 5.0, "step": 0.1},
    blur_weight={"min": -5.0, "max": 5.0, "step": 0.1},
    kernel_size={"min": 1, "max": 31, "step": 2},
    sigma={"min": 0.0, "max": 20.0, "step": 0.1, "tooltip": "0 = derived from kernel size"},
    low={"min": 0.0, "max": 100.0},
    high={"min": 0.0, "max": 100.0},
    call_button="Apply",
)
def preprocess_widget(
    image: "napari.layers.Image",
    viewer: "napari.viewer.Viewer",
    step: str = "document 000 pipeline",
    image_weight: float = 1.5,
    blur_weight: float = -0.2,
    kernel_size: int = 5,
    sigma: float = 0.0,
    low: float = 1.0,
    high: float = 99.0,
) -> "napari.types.LayerDataTuple | None":
    """Add the chosen step's result as a new layer; the input layer is never edited."""
    if image is None:
        show_error("Choose an image layer to preprocess.")
        return None
    try:
        plane = image_plane(image, viewer)
        result = run_step(
            plane,
            step,
            image_weight=image_weight,
            blur_weight=blur_weight,
            kernel_size=kernel_size,
            sigma=sigma,
            low=low,
            high=high,
        )
    except (ImageError, ValueError) as error:
        show_error(f"Preprocess '{image.name}': {error}")
        return None
    where = placement(image)
    if result.shape[:2] != plane.shape[:2]:  # resized by the pipeline: stretch back
        factor = np.asarray(plane.shape[:2]) / np.asarray(result.shape[:2])
        scale = np.asarray(where["scale"]) * factor
        translate = np.asarray(where["translate"]) + (scale - np.asarray(where["scale"])) / 2
        where = {"scale": tuple(scale), "translate": tuple(translate)}
    meta = {"napari_leukemia": {"kind": "preprocessed", "step": step, "source": image.name}}
    kwargs = {"name": f"{image.name} · {step}", "metadata": meta, **where}
    if result.ndim == 2:
        kwargs.update(colormap="gray", contrast_limits=(0.0, 1.0))
    return result, kwargs, "image"
