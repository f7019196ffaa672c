"""Extract ROI widget: the selected cell's square crop as a new, aligned image layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_error

from .. import layer_metadata
from ..images import ImageError
from ..roi import RoiTransform, extract_roi
from . import selection
from .layers import add_or_replace, image_plane, keep_below

if TYPE_CHECKING:
    import napari


def inside_part(roi: np.ndarray, transform: RoiTransform) -> tuple[np.ndarray, RoiTransform]:
    """The rows and columns of `roi` whose pixel centres lie on the image, and their
    transform: an edge cell's ROI is shown without the padding past the image border."""
    centres = [
        np.asarray(transform.translate[axis]) + np.arange(roi.shape[axis]) * transform.scale[axis]
        for axis in (0, 1)
    ]
    keep = [
        np.flatnonzero((c >= -0.5) & (c < n - 0.5))
        for c, n in zip(centres, transform.image_shape, strict=True)
    ]
    (r0, r1), (c0, c1) = ((int(k[0]), int(k[-1]) + 1) for k in keep)
    origin = (
        transform.origin[0] + r0 * transform.scale[0],
        transform.origin[1] + c0 * transform.scale[1],
    )
    return roi[r0:r1, c0:c1], RoiTransform(origin, transform.scale, transform.image_shape)


def roi_layer_data(image_layer, cell: selection.SelectedCell, size: int, margin: float, plane):
    """LayerData for the ROI of `cell`, placed over the cell on the original image.

    The layer shows the part of the model's input that lies on the image; its
    ``roi_transform`` metadata describes exactly the pixels it holds.
    """
    roi, transform = extract_roi(plane, cell.bbox, size=size, margin=margin)
    roi, transform = inside_part(roi, transform)
    scale = np.asarray(image_layer.scale)[-2:]
    translate = np.asarray(image_layer.translate)[-2:]
    meta = layer_metadata.make(
        layer_metadata.ROI,
        image_layer=image_layer.name,
        cell=cell.cell_id,
        bbox=list(cell.bbox),
        roi_transform=transform,
    )
    kwargs = {
        "name": f"ROI · {image_layer.name} · {cell.label}",
        "scale": tuple(scale * np.asarray(transform.scale)),
        "translate": tuple(translate + scale * np.asarray(transform.translate)),
        "metadata": meta,
        "rgb": roi.ndim == 3,
    }
    if np.issubdtype(roi.dtype, np.floating):
        kwargs["contrast_limits"] = (0.0, 1.0)  # as the image looks; no auto-contrast
    return roi, kwargs, "image"


class ExtractRoiWidget(Container):
    """Crop the selected cell (with a margin), resized to the classifier's input size."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self._cell = Label(value="")
        spec = _bundled_input_spec()
        self._size = SpinBox(value=spec.size[0], min=8, max=2048, label="size (px)")
        self._size.tooltip = "side of the ROI; default: the bundled model's input size"
        self._margin = FloatSpinBox(value=spec.margin, min=0.0, max=2.0, step=0.05, label="margin")
        self._run = PushButton(text="Extract ROI")
        self.extend([self._cell, self._size, self._margin, self._run])
        self._run.changed.connect(self.run)
        selection.on_selection_changed(self, self._refresh)
        self._refresh()

    def _refresh(self, *_):
        cell = selection.selected_cell(self._viewer)
        if cell is None:
            self._cell.value = "No cell selected: run 'Detect cells' and click a cell."
        else:
            self._cell.value = f"Selected: {cell.label} on '{cell.image_layer.name}'"

    def run(self):
        """Add the ROI layer of the selected cell; replaces only our own earlier ROI."""
        cell = selection.selected_cell(self._viewer)
        if cell is None:
            show_error("No cell selected: run 'Detect cells' and click a cell first.")
            return None
        try:
            plane = image_plane(cell.image_layer, self._viewer)
            data, kwargs, _ = roi_layer_data(
                cell.image_layer, cell, self._size.value, self._margin.value, plane
            )
        except (ImageError, ValueError) as error:
            show_error(f"Extract ROI: {error}")
            return None
        meta = kwargs.pop("metadata")[layer_metadata.PLUGIN_KEY]
        roi = add_or_replace(self._viewer, data, kwargs, meta)
        keep_below(self._viewer, roi, cell.cells_layer)
        return roi


def _bundled_input_spec():
    """How the bundled model takes a cell (size, margin), read without TensorFlow."""
    from ..model.classify import bundled_model_path
    from ..model.metadata import InputSpec, read_info

    info = read_info(bundled_model_path())
    return info.input if info is not None else InputSpec()
