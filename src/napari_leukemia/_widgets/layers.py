"""Small helpers that turn napari layers into the 2-D arrays the core expects."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info

from .. import layer_metadata


def image_plane(layer, viewer=None) -> np.ndarray:
    """The 2-D plane of an Image or Labels layer that the viewer currently shows.

    Stacks and time series are reduced to the displayed plane (and the user is told);
    RGB(A) layers keep their colour axis. A multiscale layer (an image opened from a
    batch store) gives its full-resolution level, not the one on screen.
    """
    data = np.asarray(layer.data[0] if getattr(layer, "multiscale", False) else layer.data)
    spatial = 3 if getattr(layer, "rgb", False) else 2
    leading = data.ndim - spatial
    if leading <= 0:
        return data
    if viewer is not None:
        step = viewer.dims.current_step
        offset = len(step) - layer.ndim  # a layer's axes are the viewer's last ones
        index = tuple(
            int(np.clip(step[offset + axis], 0, data.shape[axis] - 1)) for axis in range(leading)
        )
    else:
        index = (0,) * leading
    show_info(f"'{layer.name}' has {data.ndim - spatial} extra axes; using plane {index}.")
    return data[index]


def placement(layer) -> dict:
    """The layer's 2-D scale/translate, so results line up with their source."""
    scale = np.asarray(layer.scale)[-2:]
    translate = np.asarray(layer.translate)[-2:]
    return {"scale": tuple(scale), "translate": tuple(translate)}


#: Layer properties a re-run may change, set in this order (data first, then display).
_UPDATABLE = ("scale", "translate", "colormap", "contrast_limits", "blending", "opacity")


def update_in_place(layer, data, kwargs: dict) -> bool:
    """Give `layer` new data, metadata and display settings; False if it cannot take
    them (a different kind of array: colour vs grey, other number of axes)."""
    if np.ndim(layer.data) != np.ndim(data) or kwargs.get("rgb", layer.rgb) != layer.rgb:
        return False
    layer.data = data
    if "metadata" in kwargs:
        layer.metadata = kwargs["metadata"]
    for key in _UPDATABLE:
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    return True


def add_or_replace(viewer, data, kwargs: dict, meta: dict, layer_type: str = "image"):
    """Add a result layer, or update the plugin's own earlier layer of that name in place.

    `meta` (with a "kind") goes to ``metadata["napari_leukemia"]``. A user's layer
    with the same name is left alone and napari gives the new layer a fresh name.
    """
    kwargs = {**kwargs, "metadata": {layer_metadata.PLUGIN_KEY: meta}}
    name = kwargs["name"]
    if name in viewer.layers:
        old = viewer.layers[name]
        if layer_metadata.kind_of(old) == meta.get("kind"):
            if update_in_place(old, data, kwargs):
                return old
            viewer.layers.remove(old)
    return getattr(viewer, f"add_{layer_type}")(data, **kwargs)


def keep_below(viewer, layer, above) -> None:
    """Put `layer` under `above` in the layer list, so the cell boxes stay visible."""
    layers = viewer.layers
    if above in layers and layer in layers and layers.index(layer) > layers.index(above):
        layers.move(layers.index(layer), layers.index(above))


def model_file_edit():
    """A file field for a user's ``.keras`` model; left empty it means the bundled one."""
    from magicgui.widgets import FileEdit

    edit = FileEdit(
        mode="r",
        filter="*.keras",
        label="model",
        nullable=True,
        tooltip="a .keras model of your own; empty = the bundled model",
    )
    edit.line_edit.native.setPlaceholderText("bundled model")
    return edit


def chosen_model_path(edit):
    """The model file chosen in `edit`, or None for the bundled model."""
    from pathlib import Path

    value = edit.value
    if value is None or str(value).strip() in ("", ".") or Path(value).is_dir():
        return None
    return Path(value)
