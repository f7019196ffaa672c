"""Training, evaluation, loading and classification with real TensorFlow and real files."""

import json
import shutil

import numpy as np
import pytest
from skimage import io

from napari_leukemia.cli import main
from napari_leukemia.model import architectures, dataset
from napari_leukemia.model.backend import keras_module
from napari_leukemia.model.classify import ModelError, classify, load_model
from napari_leukemia.model.metadata import ModelInfo, file_sha256, read_info
from napari_leukemia.synthetic import make_smear
from tests.conftest import SHARED_DATA, bare_box

FOLDERS = ("Benign", "Early", "Pre", "Pro")


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """12 real all4 images per class, plus a corrupt and a non-image file."""
    if not (SHARED_DATA / "all4").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA / 'all4'}")
    root = tmp_path_factory.mktemp("all4_small")
    for folder in FOLDERS:
        (root / folder).mkdir()
        for path in sorted((SHARED_DATA / "all4" / folder).glob("*.jpg"))[:12]:
            shutil.copy(path, root / folder / path.name)
    (root / "Pre" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "Pro" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def tiny_model(small_dataset, tmp_path_factory):
    from napari_leukemia.model.training import train

    out = tmp_path_factory.mktemp("model") / "tiny.keras"
    info = train(small_dataset, out, arch="default", epochs=2, batch_size=16, patience=2)
    return out, info


def test_training_writes_model_and_metadata(tiny_model):
    path, info = tiny_model
    assert path.is_file() and path.with_suffix(".json").is_file()
    stored = read_info(path)
    assert stored == ModelInfo.from_dict(json.loads(stored.to_json()))  # round trip
    assert stored.sha256 == file_sha256(path)
    assert stored.class_names == ["Benign", "Early Pre-B", "Pre-B", "Pro-B"]
    assert tuple(stored.input.shape) == (64, 64, 3)
    assert stored.data["skipped"] == 2
    assert set(stored.data["split"]) >= {"train", "val", "test"}
    assert {"accuracy", "sensitivity", "confusion_matrix"} <= set(stored.metrics["test"])
    assert stored.history["loss"] and len(stored.history["loss"]) <= 2


def test_split_keeps_duplicates_together_and_is_seeded(small_dataset, tmp_path):
    data = dataset.scan(small_dataset)
    assert len(data) == 48 and len(data.skipped) == 2
    reasons = " ".join(reason for _, reason in data.skipped)
    assert "unreadable" in reasons and "not an image" in reasons
    # a byte copy of an image must land on the same side of the split
    copy_root = tmp_path / "copy"
    shutil.copytree(small_dataset, copy_root)
    first = sorted((copy_root / "Pre").glob("*.jpg"))[0]
    shutil.copy(first, first.with_name("zz_copy.jpg"))
    data = dataset.scan(copy_root)
    names = [p.name for p in data.paths]
    a, b = names.index(first.name), names.index("zz_copy.jpg")
    assert data.groups[a] == data.groups[b]
    parts = dataset.split(data, seed=3)
    side = {i: k for k, idx in parts.items() for i in idx}
    assert side[a] == side[b]
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(data)))
    again = dataset.split(data, seed=3)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


def test_empty_class_folder_is_reported(tmp_path):
    (tmp_path / "Benign").mkdir()
    (tmp_path / "Pre").mkdir()
    io.imsave(tmp_path / "Pre" / "a.png", make_smear(seed=1).image)
    with pytest.raises(ValueError, match="Benign has no readable images"):
        dataset.scan(tmp_path)


def test_existing_model_is_not_overwritten(tiny_model, small_dataset):
    from napari_leukemia.model.training import train

    path, _ = tiny_model
    before = file_sha256(path)
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(small_dataset, path, epochs=1)
    assert file_sha256(path) == before


def test_evaluate_json_schema(tiny_model, small_dataset, capsys):
    path, _ = tiny_model
    assert main(["evaluate", str(small_dataset), "--model", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    keys = {
        "accuracy",
        "per_class",
        "confusion_matrix",
        "sensitivity",
        "specificity",
        "false_negative_rate",
        "n_images",
    }
    assert keys <= set(result)
    assert result["n_images"] == 48
    assert np.asarray(result["confusion_matrix"]).sum() == 48
    assert set(result["per_class"]) == {"Benign", "Early Pre-B", "Pre-B", "Pro-B"}
    assert "cells" in result  # a cell model also reports cell-level figures
    assert len(result["skipped"]) == 2


def test_evaluate_writes_plots(tiny_model, small_dataset, tmp_path, capsys):
    path, _ = tiny_model
    plots = tmp_path / "plots"
    assert (
        main(
            [
                "evaluate",
                str(small_dataset),
                "--model",
                str(path),
                "--split",
                "test",
                "--plots",
                str(plots),
            ]
        )
        == 0
    )
    assert (plots / "confusion_matrix.png").stat().st_size > 1000
    assert (plots / "training_curves.png").is_file()
    assert "sensitivity" in capsys.readouterr().out


def test_predict_json(tiny_model, small_dataset, capsys):
    path, _ = tiny_model
    images = sorted((small_dataset / "Pre").glob("*.jpg"))[:2]
    assert main(["predict", *map(str, images), "--model", str(path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2
    for r in results:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["malignant_probability"] == pytest.approx(
            1.0 - r["probabilities"]["Benign"], abs=1e-5
        )


@pytest.mark.parametrize("kind", ["rgba", "uint16", "gray", "float"])
def test_classify_any_image_kind(tiny_model, kind):
    path, _ = tiny_model
    image = make_smear(seed=2).image
    converted = {
        "rgba": np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]),
        "uint16": image.astype(np.uint16) * 257,
        "gray": image.mean(axis=-1).astype(np.uint8),
        "float": image / 255.0,
    }[kind]
    result = classify(converted, path)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_classify_one_cell_uses_its_roi(tiny_model):
    path, _ = tiny_model
    smear = make_smear(seed=0)
    one = classify(smear.image, path, bbox=smear.cell_bboxes[0])
    other = classify(smear.image, path, bbox=smear.cell_bboxes[1])
    assert one.kind == "cell"
    assert one.probabilities != other.probabilities


def test_unsafe_model_is_refused(tmp_path):
    keras = keras_module()
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(outputs))).save(
        tmp_path / "lambda.keras"
    )
    with pytest.raises(ModelError, match="would run when loaded"):
        load_model(tmp_path / "lambda.keras")


def test_non_model_files_are_refused(tmp_path):
    (tmp_path / "fake.keras").write_text("hello")
    with pytest.raises(ModelError, match="not a Keras 3 model"):
        load_model(tmp_path / "fake.keras")
    (tmp_path / "old.h5").write_bytes(b"\x89HDF")
    with pytest.raises(ModelError, match="legacy HDF5"):
        load_model(tmp_path / "old.h5")
    with pytest.raises(ModelError, match="No model file"):
        load_model(tmp_path / "missing.keras")


def test_model_without_metadata_and_mismatched_metadata(tmp_path):
    model = architectures.build("seed004")
    model.save(tmp_path / "plain.keras")
    loaded = load_model(tmp_path / "plain.keras")
    assert loaded.info.input.size == (100, 100) and loaded.notes
    result = classify(make_smear(seed=0).image, loaded)
    assert any("resized" in note for note in result.notes)
    info = ModelInfo(input=architectures.input_spec("default"))
    (tmp_path / "plain.json").write_text(info.to_json())
    with pytest.raises(ModelError, match="metadata says"):
        load_model(tmp_path / "plain.keras")


def test_bundled_model_classifies_the_sample_smear():
    loaded = load_model()
    assert loaded.path.stat().st_size <= 10 * 1024 * 1024
    assert loaded.info.sha256 == file_sha256(loaded.path)
    assert loaded.info.command.startswith("napari-leukemia train")
    # the bundled model reads the cell alone (issue 10): its surroundings are blanked
    assert loaded.info.architecture == "default-cell"
    assert loaded.info.input.context == "cell"
    result = classify(make_smear(seed=0).image)
    assert result.class_name in loaded.class_names
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    # explainable: only layer types the attribution engine supports, softmax separate
    kinds = {type(layer).__name__ for layer in loaded.keras_model.layers}
    allowed = {
        "InputLayer",
        "Conv2D",
        "BatchNormalization",
        "ReLU",
        "MaxPooling2D",
        "GlobalAveragePooling2D",
        "Dropout",
        "Dense",
        "Softmax",
        "Flatten",
    }
    assert kinds <= allowed
    assert loaded.keras_model.layers[-1].name == "probabilities"


def test_classify_widget_in_a_viewer(make_napari_viewer, qtbot):
    from napari_leukemia._widgets import selection
    from napari_leukemia._widgets.classify_widget import ClassifyWidget
    from napari_leukemia.cells import detect_cells

    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    layer = viewer.add_image(smear.image, name="smear")
    data, kwargs, _ = selection.cells_layer_data(detect_cells(smear.image), "smear")
    cells = viewer.add_shapes(data, **kwargs)
    selection.select_cell(cells, 0)
    widget = ClassifyWidget(viewer)
    widget.image.value = layer
    widget.run()
    qtbot.waitUntil(lambda: widget.last_record is not None, timeout=60000)
    record = layer.metadata["napari_leukemia"]["classification"]
    assert record["cell"] == 1 and record["kind"] == "cell"
    assert cells.features.loc[0, "class"] == record["class"]
    assert set(widget.bars) == set(record["probabilities"])
    assert record["class"] in widget.call.value
    # the call says whether the cell is like the training cells (the bundled model's OOD)
    call = classify(smear.image, bbox=detect_cells(smear.image)[0])
    expected = "Unlike the cells" if call.unfamiliar else "Like the training cells"
    assert expected in widget.call.value and f"{call.ood_score:.0f}" in widget.call.value
    assert cells.features.loc[0, "OOD score"] == round(call.ood_score, 1)


def test_classify_widget_says_when_a_drawn_box_holds_no_white_cell(make_napari_viewer, qtbot):
    """A box the user draws on red cells and slide: the call says there is no white cell
    in it and not to trust it; selecting a detected cell again gives a normal call."""
    from napari_leukemia._widgets import selection
    from napari_leukemia._widgets.classify_widget import ClassifyWidget
    from napari_leukemia.cells import detect_cells

    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    layer = viewer.add_image(smear.image, name="smear")
    found = detect_cells(smear.image)
    data, kwargs, _ = selection.cells_layer_data(found, "smear")
    cells = viewer.add_shapes(data, **kwargs)
    empty = bare_box(smear.image.shape, [c.bbox for c in found], 40)
    cells.add_rectangles(selection.bbox_to_rectangle(empty))
    widget = ClassifyWidget(viewer)
    widget.image.value = layer
    drawn = len(cells.data) - 1
    for index, says_no_cell in ((drawn, True), (0, False), (drawn, True)):  # switch back
        selection.select_cell(cells, index)
        widget.last_record = None
        widget.run()
        qtbot.waitUntil(lambda: widget.last_record is not None, timeout=60000)
        record = layer.metadata["napari_leukemia"]["classification"]
        assert record["cell_found"] is (not says_no_cell)
        assert ("No white cell in this box" in widget.call.value) is says_no_cell
        assert record["unfamiliar"] is True or not says_no_cell


@pytest.mark.parametrize("shape", [(224, 224, 3), (301, 199, 3), (120, 77), (1000, 900, 3)])
def test_cell_inputs_equal_the_default_roi_padding_exactly(shape):
    """The counted 8-bit padding colour and the no-padding shortcut change no value."""
    from napari_leukemia.model.inputs import cell_inputs, convert
    from napari_leukemia.model.metadata import InputSpec
    from napari_leukemia.roi import RoiSource

    rng = np.random.default_rng(sum(shape))
    image = rng.integers(20, 240, shape, dtype=np.uint8)
    rows, cols = shape[:2]
    spec = InputSpec(kind="cell", size=(64, 64), pipeline="rgb")
    boxes = [(0, 0, 30, 30), (rows - 20, cols - 25, rows, cols), (40, 40, 70, 66)]
    batch, _ = cell_inputs(image, boxes, spec)
    source = RoiSource.of(image, rgb=True)  # the default: median colour of the image
    for box, got in zip(boxes, batch, strict=True):
        expected = convert(source.extract(box, spec.size, spec.margin)[0], spec)
        assert np.array_equal(got, expected)


def test_a_cell_only_model_trains_with_focus_penalty_and_mask_jitter(small_dataset, tmp_path):
    """The recipe of the bundled model, end to end from the command line: one epoch on
    real fields, the recipe recorded in the metadata, the model usable at once."""
    out = tmp_path / "cell.keras"
    args = ["train", str(small_dataset), "--arch", "default-cell", "--out", str(out)]
    recipe = ["--focus-penalty", "1", "--mask-jitter", "2", "--epochs", "1", "--batch-size", "32"]
    assert main([*args, *recipe]) == 0
    info = read_info(out)
    assert info.input.context == "cell"
    assert info.training["focus_penalty"] == 1.0 and info.training["mask_jitter"] == 2
    image = io.imread(sorted((small_dataset / "Pre").glob("*.jpg"))[0])
    result = classify(image, load_model(out))
    assert result.class_name in info.class_names
