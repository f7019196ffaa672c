"""Sanity checks on real TensorFlow: the context swap, model randomisation and the widget."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

import napari_leukemia as nl
from napari_leukemia import layer_metadata
from napari_leukemia.model.metadata import InputSpec, ModelInfo, write_info
from napari_leukemia.sanity import placement
from napari_leukemia.sanity.context import GROW_PX, ContextCheckError, _verdict
from napari_leukemia.sanity.randomization import RandomizationError, weight_blocks


@pytest.fixture(scope="module")
def model():
    return nl.load_model()


@pytest.fixture(scope="module")
def smear():
    image = nl.make_smear(0).image
    return image, nl.detect_cells(image)


def centre_model(keras):
    """A real Keras cell model whose call reads only the centre of the cell's window."""
    inputs = keras.Input((64, 64, 3), name="image")
    x = keras.layers.Cropping2D(24, name="centre")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    dense = keras.layers.Dense(4, name="logits")
    out = keras.layers.Softmax(name="probabilities")(dense(x))
    net = keras.Model(inputs, out)
    kernel = np.zeros((3, 4), np.float32)
    kernel[0, 0], kernel[1, 1], kernel[2, 2] = 30.0, 30.0, 30.0
    dense.set_weights([kernel, np.zeros(4, np.float32)])
    return net


def cell_spec():
    return ModelInfo(input=InputSpec(kind="cell", size=(64, 64), pipeline="rgb", margin=0.15))


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ context check


def test_table_rows_start_in_place_and_match_classify(model, smear):
    image, cells = smear
    result = nl.context_check(image, cells[0].bbox, model, n=4)
    table = result.table
    assert list(table["kind"][:2]) == ["in place", "blank slide"]
    assert set(table["kind"][2:]) <= {"same image", "sample smear"} and len(table) == 6
    direct = nl.classify(image, model, bbox=cells[0].bbox)
    np.testing.assert_allclose(
        table.loc[0, [f"P({k})" for k in direct.probabilities]].to_numpy(float),
        list(direct.probabilities.values()),
        rtol=1e-6,
    )
    probs = table[[f"P({k})" for k in model.class_names]].to_numpy(float)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(table["P(malignant)"], 1.0 - table["P(Benign)"], atol=1e-6)
    assert (table["changed"] == (table["class"] != table.loc[0, "class"])).all()
    assert result.verdict.startswith("The call depends on")
    # every moved box is the cell's box shifted, and holds the cell's pixels
    side = np.subtract(cells[0].bbox[2:], cells[0].bbox[:2])
    for item in result.images:
        assert tuple(np.subtract(item.bbox[2:], item.bbox[:2])) == tuple(side)


def test_cell_is_cut_by_its_mask_grown_by_two_pixels(model, smear):
    image, cells = smear
    result = nl.context_check(image, cells[0].bbox, model, n=0)
    blank = result.images[1].image
    mask = placement.mask_of(cells[0], image.shape)
    distance = ndi.distance_transform_edt(~mask)
    background = placement.background_colour(image)
    assert GROW_PX == 2
    np.testing.assert_array_equal(blank[distance <= 2], image[distance <= 2])
    assert (blank[distance >= 3] == background).all()


def test_cell_only_model_keeps_its_call_everywhere(smear, tmp_path):
    keras = pytest.importorskip("keras")
    image, cells = smear
    path = tmp_path / "centre.keras"
    centre_model(keras).save(path)
    write_info(path, cell_spec())
    before = sha(path)
    result = nl.context_check(image, cells[0].bbox, path, n=6)
    assert result.depends_on_cell and result.verdict.startswith("The call depends on the cell")
    assert not result.table["changed"].any()
    probs = result.table[[c for c in result.table if c.startswith("P(")]].to_numpy(float)
    np.testing.assert_allclose(probs, np.repeat(probs[:1], len(probs), axis=0), atol=1e-6)
    randomized = nl.randomization_check(image, "gradient", path, cells[0].bbox)
    assert list(randomized.table["block"]) == ["none (trained model)", "logits"]
    assert sha(path) == before
    with pytest.raises(ContextCheckError, match="LoadedModel"):
        nl.context_check(image, cells[0].bbox, nl.load_model(path).keras_model)


def test_verdict_needs_the_blank_slide_and_most_contexts():
    def table(changed):
        return pd.DataFrame(
            {
                "kind": ["in place", "blank slide", *["same image"] * (len(changed) - 1)],
                "class": ["Pre-B"] * (len(changed) + 1),
                "changed": [False, *changed],
            }
        )

    assert _verdict(table([False] * 9 + [True]), [], []).depends_on_cell
    lost_blank = _verdict(table([True] + [False] * 9), [], [])
    assert not lost_blank.depends_on_cell and "blank slide" in lost_blank.verdict
    half = _verdict(table([False] * 5 + [True] * 5), [], [])
    assert "surroundings" in half.verdict and "5 of 10" in half.verdict


def test_checks_leave_the_users_image_model_and_donors_alone(model, smear):
    image, cells = smear
    donor = nl.make_smear(4).image
    copies = image.copy(), donor.copy()
    weights = [w.copy() for w in model.keras_model.get_weights()]
    result = nl.context_check(image, cells[0].bbox, model, donors=[donor])
    assert [r.kind for r in result.images] == ["in place", "blank slide", "donor"]
    assert result.table.loc[2, "context_call"] in model.class_names
    nl.randomization_check(image, "gradient", model, cells[0].bbox)
    np.testing.assert_array_equal(image, copies[0])
    np.testing.assert_array_equal(donor, copies[1])
    for old, new in zip(weights, model.keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_bad_donors_get_clear_messages(model, smear):
    image, cells = smear
    with pytest.raises(ContextCheckError, match="Crop or resize"):
        nl.context_check(image, cells[0].bbox, model, donors=[image[:100]])
    with pytest.raises(ContextCheckError, match="channel"):
        nl.context_check(image, cells[0].bbox, model, donors=[image[..., 0]])


def test_cell_at_the_border_and_bbox_past_it(model, smear):
    image, cells = smear
    r0, c0, r1, c1 = cells[1].bbox
    cut = image[:, c0 + 6 :]  # the cell now touches the left border
    bbox = (r0, -4, r1, c1 - c0 - 6)
    result = nl.context_check(cut, bbox, model, n=2)
    assert any("clipped" in note for note in result.notes)
    assert result.table.loc[0, "bbox"] == (r0, 0, r1, c1 - c0 - 6)
    with pytest.raises(ValueError, match="outside the image"):
        nl.context_check(image, (300, 300, 320, 320), model)


def test_empty_mask_and_box_without_a_cell(model, smear):
    image, cells = smear
    with pytest.raises(ContextCheckError, match="mask is empty"):
        nl.context_check(image, cells[0].bbox, model, mask=np.zeros(image.shape[:2], bool))
    with pytest.raises(ContextCheckError, match="No detected white cell"):
        nl.context_check(np.full_like(image, 230), (10, 10, 40, 40), model)


# ------------------------------------------------------------------ randomisation


def test_randomization_lowers_the_correlation(model, smear):
    image, cells = smear
    result = nl.randomization_check(image, "gradient_x_input", model, cells[0].bbox)
    table = result.table
    blocks = weight_blocks(model.keras_model)
    assert len(table) == len(blocks) + 1 and table.loc[1, "block"] == ", ".join(blocks[-1])
    assert table.loc[0, "spearman"] == pytest.approx(1.0) and table.loc[0, "ssim"] == 1.0
    assert table["spearman_abs"].iloc[-1] < 0.5 < table["spearman_abs"].iloc[0]
    assert "depends on the model's parameters" in result.verdict
    assert len(result.maps) == len(table) and result.maps[0].shape == (64, 64)


def test_blocks_group_batchnorm_with_its_conv(model):
    blocks = weight_blocks(model.keras_model)
    assert blocks[0] == ["conv1", "bn1"] and blocks[-1] == ["logits"]
    merged = weight_blocks(model.keras_model, max_blocks=2)
    assert len(merged) == 2 and sum(merged, []) == sum(blocks, [])


def test_layers_that_cannot_be_reinitialised_get_a_clear_message():
    keras = pytest.importorskip("keras")

    class Scale(keras.layers.Layer):  # get_config lacks `units`: it cannot be rebuilt
        def __init__(self, units):
            super().__init__()
            self.w = self.add_weight(shape=(units,), initializer="ones")

        def call(self, x):
            return x * self.w

    inputs = keras.Input((8, 8, 3))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(Scale(3)(inputs)))
    net = keras.Model(inputs, out)
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    with pytest.raises(RandomizationError, match="cannot be re-initialised"):
        nl.randomization_check(image, "gradient", net)
    empty = keras.Model(inputs, keras.layers.Flatten()(inputs))
    with pytest.raises(RandomizationError, match="no layers with weights"):
        nl.randomization_check(image, "gradient", empty)


# ------------------------------------------------------------------ widget


def test_widget_runs_twice_and_follows_the_selected_cell(make_napari_viewer, qtbot):
    from napari_leukemia._widgets import selection
    from napari_leukemia._widgets.cells_widget import DetectCellsWidget
    from napari_leukemia._widgets.sanity_widget import KIND, SanityWidget

    viewer = make_napari_viewer()
    image = nl.make_smear(0).image
    layer = viewer.add_image(image.copy(), name="smear")
    detect = DetectCellsWidget(viewer)
    detect.image.value = layer
    detect.run()
    qtbot.waitUntil(lambda: any(selection.is_cells_layer(x) for x in viewer.layers), timeout=10000)
    cells_layer = next(x for x in viewer.layers if selection.is_cells_layer(x))
    widget = SanityWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = layer
    widget.contexts.value = 2
    widget.method.value = "gradient"

    def press_and_wait(twice=False):
        widget.last_result = None
        widget.run_button.native.click()
        worker = widget.worker
        if twice:  # a second press while the checks run starts nothing
            widget.run_button.native.click()
            assert widget.worker is worker
        qtbot.waitUntil(
            lambda: widget.last_result is not None and widget.run_button.enabled, timeout=60000
        )
        tiles = [x for x in viewer.layers if layer_metadata.kind_of(x) == KIND]
        return widget.last_result, tiles

    first, tiles = press_and_wait(twice=True)
    assert len(tiles) == len(first["context"].images) == len(first["context"].table)
    assert widget.context_table.shape[0] == len(first["context"].table)
    assert widget.random_table.shape[0] == len(first["randomization"].table)
    again, tiles_again = press_and_wait()
    assert len(tiles_again) == len(tiles)  # replaced, not piled up
    pd.testing.assert_frame_equal(again["context"].table, first["context"].table)
    selection.select_cell(cells_layer, 1)
    second, tiles = press_and_wait()
    chosen = selection.selected_cell(viewer, layer)
    assert second["cell"].cell_id == chosen.cell_id != first["cell"].cell_id
    assert second["context"].table.loc[0, "bbox"] == chosen.bbox
    assert {layer_metadata.read(x)["cell"] for x in tiles} == {chosen.cell_id}
    np.testing.assert_array_equal(layer.data, image)


def test_manifest_docks_the_sanity_widget(make_napari_viewer):
    from napari_leukemia._widgets.sanity_widget import SanityWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-leukemia", "Sanity checks")
    assert isinstance(widget, SanityWidget)
