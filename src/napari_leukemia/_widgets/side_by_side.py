"""Side by side: every map of one explanation in its own named panel, over its cell.

napari's grid mode puts each group of ``stride`` layers in a panel of its own, all
under one camera. Each map gets a view of its image (the same array, no copy) just
below it, so a panel shows the cell under the map; the map's name is drawn in its
panel, the other layers are hidden, and the camera is zoomed on the
explained cell. `leave` undoes all of it: the views go, hidden layers come back, the layer order
is restored.
"""

from __future__ import annotations

import contextlib

import numpy as np
from napari.layers import Image

from .. import layer_metadata

STRIDE = -2  # pairs (image view, map) from the top of the layer list; first map top-left


class SideBySide:
    """Enter and leave the side-by-side view of a set of map layers in one viewer."""

    def __init__(self, viewer):
        self._viewer = viewer
        self._hidden: list = []
        self._underlays: list = []
        self._maps: list = []
        self._order: list = []

    @property
    def active(self) -> bool:
        return self._grid().enabled

    def _grid(self):
        canvas = getattr(self._viewer, "canvas", None)
        return canvas.grid if canvas is not None else self._viewer.grid

    def enter(self, maps, image_layer, window=None) -> bool:
        """Show `maps` side by side over `image_layer`; zoom on `window` (image pixels:
        top, left, bottom, right). False when none of the maps is in the viewer."""
        layers = self._viewer.layers
        maps = [m for m in maps if m in layers]
        if not maps or image_layer not in layers:
            return False
        self.leave()
        self._maps = maps
        self._order = list(layers)
        self._hidden = [lay for lay in layers if lay.visible and lay not in maps]
        for lay in self._hidden:
            lay.visible = False
        for m in reversed(maps):  # the first map ends on top: the top-left panel
            layers.move(layers.index(m), len(layers))
        for m in maps:
            m.visible = True
            underlay = _image_view(image_layer, m.name)
            layers.insert(layers.index(m), underlay)
            self._underlays.append(underlay)
            m.name_overlay.visible = True
        grid = self._grid()
        grid.stride = STRIDE
        grid.enabled = True
        self._viewer.reset_view()
        if window is not None:
            zoom_to(self._viewer, image_layer, window)
        return True

    def leave(self) -> None:
        """Back to one overlay panel with the layers visible as before."""
        layers = self._viewer.layers
        for underlay in self._underlays:
            if underlay in layers:
                layers.remove(underlay)
        for m in self._maps:
            with contextlib.suppress(AttributeError):  # a map the user removed meanwhile
                m.name_overlay.visible = False
        for lay in self._hidden:
            if lay in layers:
                lay.visible = True
        kept = [lay for lay in self._order if lay in layers]  # the layer order as before
        for index, lay in enumerate(kept):
            if layers.index(lay) != index:
                layers.move(layers.index(lay), index)
        self._underlays, self._hidden, self._maps, self._order = [], [], [], []
        grid = self._grid()
        grid.enabled = False
        grid.stride = 1


def _image_view(image_layer, map_name: str) -> Image:
    """A second layer on the image's own array, displayed as the image is."""
    kwargs = {
        "name": f"{image_layer.name} under {map_name}",
        "rgb": image_layer.rgb,
        "scale": tuple(np.asarray(image_layer.scale)[-2:]),
        "translate": tuple(np.asarray(image_layer.translate)[-2:]),
        "contrast_limits": tuple(image_layer.contrast_limits),
        "metadata": layer_metadata.make(layer_metadata.UNDERLAY, image_layer=image_layer.name),
    }
    if not image_layer.rgb:
        kwargs["colormap"] = image_layer.colormap
    data = image_layer.data
    return Image(data, **kwargs)


def zoom_to(viewer, layer, window) -> None:
    """Centre the camera on `window` (layer pixels) and zoom so it fills the panels."""
    if layer not in viewer.layers:
        return
    top, left, bottom, right = window
    corners = np.array([[top - 0.5, left - 0.5], [bottom - 0.5, right - 0.5]])
    scale = np.asarray(layer.scale)[-2:]
    world = corners * scale + np.asarray(layer.translate)[-2:]
    rows, cols = np.asarray(layer.data.shape[:2] if layer.rgb else layer.data.shape[-2:])
    full = np.array([rows, cols]) * scale
    factor = float(np.min(full / np.maximum(world[1] - world[0], 1e-9)))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (*tuple(camera.center)[:-2], *tuple(world.mean(axis=0)))
    camera.zoom = camera.zoom * max(1.0, 0.9 * factor)
