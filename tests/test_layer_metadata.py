"""The plugin's layer metadata schema: one writer, one reader, used by every widget."""

import json

import pytest

from napari_leukemia import layer_metadata
from napari_leukemia.roi import extract_roi
from napari_leukemia.synthetic import make_smear


class _Layer:
    def __init__(self, metadata=None):
        self.metadata = metadata if metadata is not None else {}


def test_make_and_read_round_trip_and_stay_json_safe():
    smear = make_smear(seed=0)
    _, transform = extract_roi(smear.image, smear.cell_bboxes[0])
    layer = _Layer(
        layer_metadata.make(layer_metadata.ROI, image_layer="smear", roi_transform=transform)
    )
    meta = layer_metadata.read(layer)
    assert meta["kind"] == "roi" and layer_metadata.kind_of(layer) == "roi"
    assert layer_metadata.image_layer_of(layer) == "smear"
    assert layer_metadata.roi_transform_of(layer) == transform.as_dict()
    assert json.loads(json.dumps(layer.metadata)) == layer.metadata
    meta["kind"] = "changed"  # read returns a copy
    assert layer_metadata.kind_of(layer) == "roi"


def test_update_keeps_other_keys_and_foreign_layers_read_empty():
    layer = _Layer({"user": 1})
    assert layer_metadata.read(layer) == {} and layer_metadata.kind_of(layer) is None
    layer_metadata.update(layer, classification={"class": "Benign"})
    layer_metadata.update(layer, edited=True)
    assert layer.metadata["user"] == 1
    assert layer_metadata.read(layer) == {"classification": {"class": "Benign"}, "edited": True}


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="Unknown layer kind 'rois'"):
        layer_metadata.make("rois")
