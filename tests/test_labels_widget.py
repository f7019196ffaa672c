"""Morphology labels widget in a real napari viewer (run under Xvfb)."""

import numpy as np
import pytest

from napari_leukemia._widgets.labels_widget import (
    CUSTOM_COLORS,
    MorphologyLabelsWidget,
    layer_label_names,
)
from napari_leukemia.labels import MORPHOLOGY_CLASSES, MORPHOLOGY_COLORS, load_labels
from napari_leukemia.synthetic import make_smear


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture
def setup(make_napari_viewer):
    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    image = viewer.add_image(smear.image, name="smear", rgb=True, translate=(5, 7))
    widget = MorphologyLabelsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = image
    return viewer, widget, image, smear


def test_new_labels_layer_has_shape_colours_and_names(setup):
    viewer, widget, image, smear = setup
    layer = widget.new_labels()
    assert layer.data.shape == smear.image.shape[:2]
    assert not layer.data.any()
    np.testing.assert_allclose(layer.translate, image.translate)
    values = np.array(list(MORPHOLOGY_CLASSES))
    np.testing.assert_allclose(
        layer.colormap.map(values), [MORPHOLOGY_COLORS[v] for v in values], atol=1e-6
    )
    assert layer_label_names(layer) == MORPHOLOGY_CLASSES
    assert widget.labels.value is layer
    # the status bar shows the class name under the cursor, not just the value
    layer.data[10, 20] = 1
    status = layer.get_status((15, 27), world=True)
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert "nucleus" in text


def test_add_custom_class(setup):
    viewer, widget, image, smear = setup
    layer = widget.new_labels()
    widget.class_name.value = "platelet"
    value = widget._add_class_clicked()
    assert value == 6
    assert layer_label_names(layer)[6] == "platelet"
    assert layer.selected_label == 6
    np.testing.assert_allclose(layer.colormap.map(np.array([6]))[0], CUSTOM_COLORS[0])
    # old classes keep their colours; a duplicate name or an empty one is refused
    np.testing.assert_allclose(layer.colormap.map(np.array([1]))[0], MORPHOLOGY_COLORS[1])
    widget.class_name.value = "platelet"
    assert widget._add_class_clicked() is None
    assert "already" in widget.message.value
    widget.class_name.value = "  "
    assert widget._add_class_clicked() is None
    widget.class_name.value = "smudge cell"
    assert widget._add_class_clicked() == 7


def test_add_class_to_a_plain_labels_layer_keeps_painted_colours(setup):
    viewer, widget, image, smear = setup
    data = np.zeros(smear.labels.shape, np.int32)
    data[:10, :10] = 3
    plain = viewer.add_labels(data, name="mine")
    before = plain.colormap.map(np.array([3]))[0]
    widget.labels.value = plain
    widget.class_name.value = "artefact"
    assert widget._add_class_clicked() == 4
    np.testing.assert_allclose(plain.colormap.map(np.array([3]))[0], before)
    assert layer_label_names(plain) == {4: "artefact"}


def test_suggest_labels_draft_matches_truth_and_spares_user_layers(setup, qtbot):
    viewer, widget, image, smear = setup
    name = "suggested labels · smear"
    mine = viewer.add_labels(np.zeros(smear.labels.shape, np.int32), name=name)
    widget.suggest()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=30000)
    assert mine in viewer.layers and not mine.data.any()  # the user's layer is untouched
    draft = viewer.layers[-1]
    assert draft is not mine and draft.name.startswith(name)
    assert dice(draft.data == 1, smear.labels == 1) > 0.8
    assert layer_label_names(draft)[1] == "nucleus"
    np.testing.assert_allclose(draft.translate, image.translate)
    # a second run replaces the plugin's own unedited draft, not the user's layer
    widget.suggest()
    qtbot.waitUntil(lambda: draft not in viewer.layers, timeout=30000)
    assert len(viewer.layers) == 3 and mine in viewer.layers
    # once the user corrected the draft with the brush, it is kept too
    corrected = viewer.layers[-1]
    corrected.paint((5, 5), 3)
    widget.suggest()
    qtbot.waitUntil(lambda: len(viewer.layers) == 4, timeout=30000)
    assert corrected in viewer.layers and corrected.data[5, 5] == 3


def test_save_and_load_round_trip_with_names(setup, tmp_path):
    viewer, widget, image, smear = setup
    layer = widget.new_labels()
    widget.class_name.value = "platelet"
    widget._add_class_clicked()
    data = smear.labels.astype(np.int32)
    data[:4, :4] = 6
    layer.data = data
    path = tmp_path / "labels.png"
    widget.save(path)
    stored, names = load_labels(path)
    np.testing.assert_array_equal(stored, data)
    assert names[1] == "nucleus" and names[6] == "platelet"

    loaded = widget.load(path)
    np.testing.assert_array_equal(loaded.data, data)
    assert layer_label_names(loaded)[6] == "platelet"
    np.testing.assert_allclose(loaded.colormap.map(np.array([6]))[0], CUSTOM_COLORS[0])
    np.testing.assert_allclose(loaded.translate, image.translate)  # same shape: placed


def test_save_never_overwrites_without_confirmation(setup, tmp_path):
    viewer, widget, image, smear = setup
    layer = widget.new_labels()
    layer.data = smear.labels.astype(np.int32)
    path = tmp_path / "labels.tif"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        widget.save(path)
    assert path.read_bytes() == b"precious"

    asked = []
    widget.confirm_overwrite = lambda p: asked.append(p) or False
    widget.save_path.value = path
    assert widget._save_clicked() is None
    assert asked == [path] and path.read_bytes() == b"precious"
    assert "left unchanged" in widget.message.value

    widget.confirm_overwrite = lambda p: True
    assert widget._save_clicked() == path
    np.testing.assert_array_equal(load_labels(path)[0], smear.labels)


def test_load_bad_file_gives_a_message(setup, tmp_path):
    viewer, widget, image, smear = setup
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    widget.load_path.value = bad
    n = len(viewer.layers)
    assert widget._load_clicked() is None
    assert widget.message.value.startswith("Load labels:")
    assert len(viewer.layers) == n
