"""The OOD score and the temperature: their definitions, their round trip through the
metadata, and what `classify`, `predict --json` and the widget say with them."""

import json

import numpy as np
import pytest

from napari_leukemia.cli import main
from napari_leukemia.model import calibration, ood
from napari_leukemia.model.classify import UNFAMILIAR_NOTE, classify, load_model
from napari_leukemia.model.metadata import ModelInfo
from napari_leukemia.synthetic import make_smear
from tests.conftest import bare_box


def _gaussian_features(rng, n_per_class=400, dims=6):
    means = np.eye(3, dims) * 6.0
    features = np.concatenate([rng.normal(m, 1.0, (n_per_class, dims)) for m in means])
    return features, np.repeat(np.arange(3), n_per_class)


def test_mahalanobis_score_is_the_distance_to_the_nearest_class_mean():
    rng = np.random.default_rng(1)
    features, labels = _gaussian_features(rng)
    scorer = ood.fit(features, labels, features)
    point = features[:5]
    by_hand = np.min(
        [[(x - m) @ scorer.precision @ (x - m) for m in scorer.means] for x in point], axis=1
    )
    np.testing.assert_allclose(scorer.scores(point), by_hand, rtol=1e-10)
    # a point far from every class is scored far above the threshold, a class mean at 0
    far = scorer.scores(np.full((1, features.shape[1]), 40.0))[0]
    assert far > 10 * scorer.threshold
    assert scorer.scores(scorer.means).max() == pytest.approx(0.0, abs=1e-9)


def test_threshold_flags_one_in_a_hundred_validation_inputs_and_survives_json():
    rng = np.random.default_rng(2)
    train, labels = _gaussian_features(rng)
    val, _ = _gaussian_features(rng, n_per_class=1000)
    scorer = ood.fit(train, labels, val)
    flagged = scorer.scores(val) > scorer.threshold
    assert flagged.sum() <= 0.01 * len(val) and flagged.sum() >= 0.01 * len(val) - 1
    back = ood.OodModel.from_dict(json.loads(json.dumps(scorer.to_dict())))
    assert np.array_equal(back.scores(val) > back.threshold, flagged)


def test_temperature_keeps_every_ranking_and_recovers_a_known_temperature():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (20000, 4))
    true_t = 2.5  # labels drawn from softmax(logits / 2.5): the model is over-confident
    p = calibration.softmax(logits, true_t)
    labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    fitted = calibration.fit_temperature(logits, labels)
    assert abs(fitted - true_t) < 0.1 * true_t
    scaled = calibration.softmax(logits, fitted)
    assert np.array_equal(scaled.argmax(axis=1), logits.argmax(axis=1))
    before = calibration.expected_calibration_error(calibration.softmax(logits), labels)
    after = calibration.expected_calibration_error(scaled, labels)
    assert after < before / 3


def test_ece_of_a_hand_made_example():
    # two bins: confidence 0.95 (4 inputs, 3 right) and 0.55 (2 inputs, both right)
    probabilities = np.array([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 0])
    expected = 4 / 6 * abs(0.75 - 0.95) + 2 / 6 * abs(1.0 - 0.55)
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx(
        expected, rel=1e-12
    )


def test_bundled_model_reports_an_ood_score_and_calibrated_probabilities():
    model = load_model()
    assert model.ood is not None and model.temperature > 0
    smear = make_smear(seed=0)
    image, boxes = smear.image, smear.cell_bboxes[:3]
    call = classify(image, model)
    assert call.ood_score is not None and call.unfamiliar is not None
    cells = classify(image, model, bbox=boxes)
    assert all(c.ood_score is not None for c in cells)
    # the reported probabilities are softmax(logits / T) of the model's own logits
    from napari_leukemia.model.inputs import cell_inputs
    from napari_leukemia.model.ood import features_and_logits

    batch = cell_inputs(image, boxes, model.info.input)[0]
    _, logits = features_and_logits(model.keras_model, batch, model.ood.layers)
    expected = calibration.softmax(logits, model.temperature)
    got = np.array([list(c.probabilities.values()) for c in cells])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_blank_slide_is_flagged_and_says_so_in_json(tmp_path, capsys):
    from skimage import io

    model = load_model()
    image = np.full((200, 200, 3), 235, np.uint8)
    image[60:140, 60:140] = (200, 170, 190)  # a pink smudge, nothing like a white cell
    call = classify(image, model, bbox=(60, 60, 140, 140))
    assert call.unfamiliar is True
    assert any(n.startswith(UNFAMILIAR_NOTE.split("(")[0]) for n in call.notes)
    path = tmp_path / "smudge.png"
    io.imsave(path, image, check_contrast=False)
    assert main(["predict", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"ood_score", "ood_threshold", "unfamiliar"} <= set(out)


def test_a_box_without_a_white_cell_is_flagged_whatever_the_ood_score(tmp_path, capsys):
    """A box on red cells and slide (no detected white cell in it) is called unfamiliar
    with a note saying why; detected cells, loose boxes around them and a box drawn
    inside a cell are found; a box that only catches a neighbour's rim is not."""
    from napari_leukemia.cells import detect_cells
    from napari_leukemia.model.classify import CELL_IN_BOX_SHARE, NO_CELL_NOTE, cells_found

    model = load_model()
    smear = make_smear(seed=0)
    image = smear.image
    cells = detect_cells(image)
    r0, c0, r1, c1 = cells[0].bbox
    side = r1 - r0
    empty = bare_box(image.shape, [c.bbox for c in cells], side)
    inside = (r0 + side // 4, c0 + (c1 - c0) // 4, r1 - side // 4, c1 - (c1 - c0) // 4)
    loose = (r0 - 6, c0 - 6, r1 + 6, c1 + 6)
    rim = (r1 - 2, c0, r1 - 2 + side, c1)  # starts on the cell's last two rows
    found = cells_found(image, [cells[0].bbox, loose, inside, empty, rim])
    assert found == [True, True, True, False, False]
    # what `rim` catches of the cell is below the share that counts
    mask = np.zeros(image.shape[:2], bool)
    a, b, _, _ = cells[0].bbox
    mask[a : a + cells[0].mask.shape[0], b : b + cells[0].mask.shape[1]] = cells[0].mask
    caught = mask[rim[0] : rim[2], rim[1] : rim[3]].sum()
    assert 0 < caught < CELL_IN_BOX_SHARE * min(mask.sum(), side * (c1 - c0))

    calls = classify(image, model, bbox=[cells[0].bbox, empty])
    assert [c.cell_found for c in calls] == [True, False]
    assert calls[1].unfamiliar is True and NO_CELL_NOTE in calls[1].notes
    assert NO_CELL_NOTE not in calls[0].notes
    one = classify(image, model, bbox=empty)
    assert one.cell_found is False and one.as_dict()["unfamiliar"] is True
    assert classify(image, model, bbox=cells[:1])[0].cell_found is True  # own masks
    assert classify(image, model).cell_found is True  # a field of detected cells


def test_metadata_round_trip_keeps_the_fits():
    info = load_model().info
    back = ModelInfo.from_dict(json.loads(info.to_json()))
    assert back.ood == info.ood and back.calibration == info.calibration


def test_calibrate_refuses_to_refit_without_overwrite(tmp_path):
    import shutil

    from napari_leukemia.model.classify import bundled_model_path

    copy = tmp_path / "m.keras"
    shutil.copy(bundled_model_path(), copy)
    shutil.copy(bundled_model_path().with_suffix(".json"), copy.with_suffix(".json"))
    before = copy.with_suffix(".json").read_bytes()
    assert main(["calibrate", str(copy), str(tmp_path)]) == 2
    assert copy.with_suffix(".json").read_bytes() == before
