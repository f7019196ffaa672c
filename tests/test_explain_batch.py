"""Batches of cells, the method table's runners, and the compiled inference path.

A batch (boxes of one field, or a stack of ROIs) must give, cell by cell, what the same
cell gives alone, from one compiled call; bad batches get clear messages.
"""

import numpy as np
import pytest

from napari_leukemia.cells import detect_cells
from napari_leukemia.explain import METHODS, ExplainError, attribute, explain, explain_full
from napari_leukemia.explain.analyzers import get_engine, predict
from napari_leukemia.explain.runners import RUNNERS, runner_for
from napari_leukemia.model.classify import LoadedModel, classify
from napari_leukemia.model.inputs import cell_inputs, convert
from napari_leukemia.model.metadata import InputSpec, ModelInfo
from napari_leukemia.synthetic import make_smear
from tests.test_explain import close, default_cnn, direct_gradient, keras

BATCH_METHODS = ("gradient_x_input", "lrp_epsilon", "grad_cam", "integrated_gradients")


@pytest.fixture(scope="module")
def loaded():
    spec = InputSpec(kind="cell", size=(64, 64), pipeline="rgb")
    return LoadedModel(default_cnn(5), ModelInfo(input=spec))


@pytest.fixture(scope="module")
def field():
    """A synthetic field and its detected cells plus two hand-drawn boxes of other sizes."""
    image = make_smear(seed=3, n_leukocytes=3).image
    boxes = [c.bbox for c in detect_cells(image)] + [(10, 12, 40, 60), (150, 150, 210, 200)]
    return image, boxes


# ------------------------------------------------------------------------ method table
def test_every_method_has_a_runner_checked_params_and_an_empty_map_reason():
    for method, info in METHODS.items():
        runner = runner_for(method)
        assert runner is RUNNERS[info.runner] and runner.key == info.runner
        assert info.empty_reason, method
        for param in info.params:
            assert param.check is not None, (method, param.name)
            assert param.validate(param.default) == param.default or param.default is None


def test_the_method_table_describes_every_form_field():
    """What a parameter form needs: a label, a widget kind, and a valid default in range."""
    for method, info in METHODS.items():
        for param in info.form_params:
            assert param.label and param.widget in ("int", "float", "text"), (method, param)
            shown = param.none_as if param.default is None else param.default
            if param.widget != "text":
                assert param.low <= shown <= param.high, (method, param.name)
        hidden = {p.name for p in info.params} - {p.name for p in info.form_params}
        assert hidden <= {"batch_size", "seed", "baseline", "low", "high", "fill"}, method
    with pytest.raises(ExplainError, match="alpha and beta cannot both be 0"):
        METHODS["lrp_alpha_beta"].resolve({"alpha": 0.0, "beta": 0.0})
    with pytest.raises(ExplainError, match="epsilon must be > 0"):
        METHODS["lrp_epsilon"].resolve({"epsilon": 0})


# ------------------------------------------------------------------- batches of cells
@pytest.mark.filterwarnings("ignore::napari_leukemia.explain.api.EmptyMapWarning")
def test_a_batch_of_boxes_gives_each_cells_own_map_from_one_compiled_call(loaded, field):
    image, boxes = field
    targets = [i % 4 for i in range(len(boxes))]
    for method in BATCH_METHODS:
        results = explain_full(image, method, loaded, targets, bbox=boxes)
        assert len(results) == len(boxes)
        maps = explain(image, method, loaded, targets, bbox=np.array(boxes))
        assert maps.shape == (len(boxes), *image.shape[:2]) and maps.dtype == np.float32
        for box, target, result, batch_map in zip(boxes, targets, results, maps, strict=True):
            single = explain_full(image, method, loaded, target, bbox=box)
            assert result.bbox == tuple(box) and result.target == target
            assert close(result.map, single.map, 1e-4), method
            assert close(batch_map, single.map, 1e-4), method
            assert result.probabilities == pytest.approx(single.probabilities, rel=1e-4)
    engine = get_engine(loaded.keras_model, "gradient_x_input", {})
    assert engine._fn.experimental_get_tracing_count() == 1  # batches reuse the one trace


def test_detected_cells_can_be_passed_as_the_batch(loaded, field):
    image, _ = field
    cells = detect_cells(image)
    results = explain_full(image, "gradient", loaded, bbox=cells)
    assert [r.bbox for r in results] == [tuple(c.bbox) for c in cells]
    one = explain_full(image, "gradient", loaded, bbox=cells[0])
    assert close(results[0].map, one.map)


@pytest.mark.filterwarnings("ignore::napari_leukemia.explain.api.EmptyMapWarning")
def test_a_stack_of_rois_of_different_sizes_is_explained_roi_by_roi(loaded, field):
    image, boxes = field
    rois = [image[r0:r1, c0:c1] for r0, c0, r1, c1 in boxes[-2:]]
    assert rois[0].shape != rois[1].shape
    maps = explain(rois, "lrp_epsilon", loaded, 1)
    assert isinstance(maps, list) and [m.shape for m in maps] == [r.shape[:2] for r in rois]
    for roi, result in zip(rois, explain_full(rois, "lrp_epsilon", loaded, 1), strict=True):
        x = convert(roi, loaded.info.input)
        expected = attribute(loaded.keras_model, x, "lrp_epsilon", 1)[0][0]
        assert close(result.input_map, expected, 1e-4)
    same = np.stack([convert(r, loaded.info.input) for r in rois])  # 4-D: one array back
    stacked = explain(same, "gradient", loaded, 0)
    assert stacked.shape == (2, 64, 64)
    assert close(stacked[1], direct_gradient(loaded.keras_model, same[1], 0).sum(-1))


def test_large_batches_are_chunked_and_say_so(loaded, field):
    image, boxes = field
    whole = explain_full(image, "gradient_x_input", loaded, 0, bbox=boxes)
    assert not any("chunks" in n for n in whole[0].notes)  # 5 cells fit in one call
    x = cell_inputs(image, boxes, loaded.info.input)[0]
    maps, _, _ = attribute(loaded.keras_model, x, "integrated_gradients", 0, batch_size=3)
    fine, _, _ = attribute(loaded.keras_model, x, "integrated_gradients", 0)
    assert close(maps, fine, 1e-4)
    results = explain_full(image, "occlusion", loaded, 0, bbox=boxes[:2], batch_size=2)
    assert results[0].diagnostics["windows"] > 6  # occluded copies ran in several chunks


def test_gradient_batches_past_the_budget_run_in_chunks(loaded, field, monkeypatch):
    from napari_leukemia.explain import gradients

    image, boxes = field
    whole = explain_full(image, "lrp_z", loaded, 2, bbox=boxes)
    monkeypatch.setattr(gradients, "MEMORY_BUDGET", 1)  # one input per chunk
    fresh = LoadedModel(default_cnn(5), loaded.info)
    chunked = explain_full(image, "lrp_z", fresh, 2, bbox=boxes)
    assert any(f"{len(boxes)} chunks" in note for note in chunked[0].notes)
    for a, b in zip(whole, chunked, strict=True):
        assert close(a.map, b.map, 1e-4)


def test_empty_batches_and_mismatched_targets(loaded, field):
    image, boxes = field
    assert explain_full(image, "gradient", loaded, bbox=[]) == []
    empty = explain(image, "gradient", loaded, bbox=[])
    assert empty.shape == (0, *image.shape[:2])
    assert explain(np.zeros((0, 64, 64, 3), np.float32), "lrp_z", loaded).shape == (0, 64, 64)
    assert classify(image, loaded, bbox=[]) == []
    assert classify([], loaded) == []
    with pytest.raises(ExplainError, match="3 targets were given for 2 cells"):
        explain(image, "gradient", loaded, [0, 1, 2], bbox=boxes[:2])
    with pytest.raises(ExplainError, match="not both"):
        explain([image], "gradient", loaded, bbox=boxes)
    with pytest.raises(ExplainError, match="is not a class"):
        explain(image, "gradient", loaded, ["Benign", "nope"], bbox=boxes[:2])


# ------------------------------------------------------------- compiled classification
def test_classify_a_batch_of_cells_equals_each_cell_alone(loaded, field):
    image, boxes = field
    batch = classify(image, loaded, bbox=boxes)
    assert len(batch) == len(boxes) and all(r.kind == "cell" for r in batch)
    for box, result in zip(boxes, batch, strict=True):
        alone = classify(image, loaded, bbox=box)
        assert result.class_name == alone.class_name
        assert result.probabilities == pytest.approx(alone.probabilities, rel=1e-5, abs=1e-7)
    rois = [image[r0:r1, c0:c1] for r0, c0, r1, c1 in boxes[-2:]]
    stacked = classify(rois, loaded)
    for roi, result in zip(rois, stacked, strict=True):
        probs = loaded.keras_model(convert(roi, loaded.info.input)[None], training=False)
        assert list(result.probabilities.values()) == pytest.approx(
            list(np.asarray(probs)[0]), rel=1e-5, abs=1e-7
        )


def test_the_compiled_forward_pass_equals_the_keras_model(loaded, field):
    image, boxes = field
    x = cell_inputs(image, boxes, loaded.info.input)[0]
    eager = np.asarray(loaded.keras_model(x, training=False))
    assert close(predict(loaded.keras_model, x), eager, 1e-5)
    assert close(predict(loaded.keras_model, x, batch_size=2), eager, 1e-5)
    assert predict(loaded.keras_model, x[:0]).shape == (0, 4)


def test_a_model_taking_any_input_size_is_explained_at_each_size():
    """One compiled signature with free rows/cols serves inputs of different sizes."""
    keras.utils.set_random_seed(8)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    rng = np.random.default_rng(9)
    small, large = rng.random((20, 24, 3), np.float32), rng.random((33, 31, 3), np.float32)
    for image in (small, large):
        got = explain(image, "gradient", model, 1)
        assert got.shape == image.shape[:2]
        assert close(got, direct_gradient(model, image, 1).sum(-1))
    maps = explain([small, large], "gradient_x_input", model, 2)
    assert [m.shape for m in maps] == [(20, 24), (33, 31)]
    engine = get_engine(model, "gradient", {})
    assert engine._fn.experimental_get_tracing_count() == 1


def test_a_model_whose_layers_change_between_calls_is_walked_again():
    keras.utils.set_random_seed(10)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()])
    model.add(keras.layers.Dense(2, name="logits"))
    x = np.random.default_rng(11).random((16, 16, 3)).astype(np.float32)
    assert close(explain(x, "gradient", model, 1), direct_gradient(model, x, 1).sum(-1))
    with pytest.raises(ExplainError, match="takes"):
        explain(np.ones((12, 12, 3), np.float32), "gradient", model, 0)
    model.pop()
    model.add(keras.layers.Dense(3, name="logits"))  # now three classes
    assert close(explain(x, "gradient", model, 2), direct_gradient(model, x, 2).sum(-1))
    assert predict(model, x[None]).shape == (1, 3)


# -------------------------------------------------------------- remembered cell inputs
def test_remembered_inputs_give_the_same_maps_and_follow_edits_of_the_image():
    """A cell-only model given a box: the mask comes from one remembered detection and the
    prepared input is reused, with results equal to a fresh preparation (and to the
    cell's own mask); an image edited in place is prepared anew; a clipped box warns on
    every call, not only the first."""
    from napari_leukemia import memo
    from napari_leukemia.roi import RoiWarning

    spec = InputSpec(kind="cell", size=(64, 64), pipeline="rgb", context="cell")
    model = LoadedModel(default_cnn(6), ModelInfo(input=spec))
    image = make_smear(seed=5, n_leukocytes=3).image.copy()
    cell = detect_cells(image)[0]
    memo.clear()
    first = explain_full(image, "gradient_x_input", model, 1, bbox=cell.bbox)
    assert len(memo.DETECTED._values) == 2  # one detection (cells, masks) for the mask
    again = explain_full(image, "lrp_epsilon", model, 1, bbox=cell.bbox)
    assert len(memo.DETECTED._values) == 2 and len(memo.PREPARED._values) == 1
    memo.clear()
    fresh = explain_full(image, "lrp_epsilon", model, 1, bbox=cell.bbox)
    own_mask = explain_full(image, "gradient_x_input", model, 1, bbox=cell)
    assert np.array_equal(again.map, fresh.map) and np.array_equal(first.map, own_mask.map)
    assert again.notes == fresh.notes and again.transform == fresh.transform

    r0, c0, r1, c1 = cell.bbox
    image[r0:r1, c0:c1] = 255 - image[r0:r1, c0:c1]  # edited in place, same array
    edited = explain_full(image, "lrp_epsilon", model, 1, bbox=cell.bbox)
    memo.clear()
    expected = explain_full(image, "lrp_epsilon", model, 1, bbox=cell.bbox)
    assert not np.array_equal(edited.map, fresh.map)
    assert np.array_equal(edited.map, expected.map)

    rows, cols = image.shape[:2]
    past_edge = (rows - 20, cols - 20, rows + 15, cols + 15)
    for _ in range(2):
        with pytest.warns(RoiWarning, match="clipped"):
            explain_full(image, "gradient", model, bbox=past_edge)
    memo.clear()
