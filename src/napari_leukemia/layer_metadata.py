"""The plugin's layer metadata: one schema, one reader, one writer.

Every layer the plugin makes carries ``layer.metadata["napari_leukemia"]``, a plain
dict (JSON-safe, so the batch store and napari's own save keep it). Its keys:

=================  ==========================================================
``kind``           what the layer is: one of `KINDS`
``image_layer``    name of the image layer it was made from / belongs to
``source_file``    path of the file it was loaded from (labels files)
``roi_transform``  `RoiTransform.as_dict()` of the ROI it lives on or came from
``cell``           the cell id it is about (ROI, maps)
``edited``         True once the user has painted / moved shapes on it
``roi_map``        a map's exact values on its ROI (model-input grid), as an
                   array: what the documented quantification protocol uses
=================  ==========================================================

Kinds add their own keys (a map's ``method``, ``target`` …). Everything is JSON-safe
except ``roi_map`` (an array; a store keeps it as an array of its own). Pure Python:
no Qt, no napari import, so the core and the batch reader use the same definitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PLUGIN_KEY = "napari_leukemia"

CELLS = "cells"
ROI = "roi"
ATTRIBUTION = "attribution"
PREPROCESSED = "preprocessed"
MORPHOLOGY = "morphology_labels"
SUGGESTED = "suggested_labels"
UNDERLAY = "side_by_side_underlay"  # a view of the image under one map, while side by side
SANITY_TILE = "sanity_context"  # one context the sanity check classified the cell in
KINDS = (CELLS, ROI, ATTRIBUTION, PREPROCESSED, MORPHOLOGY, SUGGESTED, UNDERLAY, SANITY_TILE)

IMAGE_LAYER = "image_layer"
SOURCE_FILE = "source_file"
ROI_TRANSFORM = "roi_transform"
ROI_MAP = "roi_map"


def read(layer) -> dict[str, Any]:
    """A copy of the plugin's metadata of `layer` ({} for layers it did not make)."""
    meta = getattr(layer, "metadata", None) or {}
    return dict(meta.get(PLUGIN_KEY) or {})


def kind_of(layer) -> str | None:
    return read(layer).get("kind")


def make(kind: str, **fields) -> dict[str, dict]:
    """``{"napari_leukemia": {...}}`` for a new layer's ``metadata=`` argument."""
    if kind not in KINDS:
        raise ValueError(f"Unknown layer kind {kind!r}; the plugin's kinds are {KINDS}.")
    return {PLUGIN_KEY: {"kind": kind, **_plain(fields)}}


def update(layer, **fields) -> None:
    """Set `fields` in `layer`'s plugin metadata in place (other keys are kept)."""
    layer.metadata.setdefault(PLUGIN_KEY, {}).update(_plain(fields))


def image_layer_of(layer) -> str | None:
    """Name of the image layer `layer` was made from, if recorded."""
    return read(layer).get(IMAGE_LAYER)


def roi_transform_of(layer):
    """The ROI transform recorded with `layer` (an ``as_dict()`` mapping), or None."""
    return read(layer).get(ROI_TRANSFORM)


def _plain(fields: Mapping) -> dict:
    """Transforms as dicts, so the metadata stays JSON-safe."""
    out = {}
    for key, value in fields.items():
        out[key] = value.as_dict() if hasattr(value, "as_dict") else value
    return out
