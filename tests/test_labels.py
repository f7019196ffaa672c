"""Tests of morphology labels: names, the automatic draft, and label files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_leukemia.images import ImageError
from napari_leukemia.labels import (
    MORPHOLOGY_CLASSES,
    MORPHOLOGY_COLORS,
    NAMES_KEY,
    LabelsError,
    label_names,
    load_labels,
    read_labels_zarr,
    save_labels,
    suggest_labels,
    write_labels_zarr,
)
from napari_leukemia.synthetic import make_smear


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def test_morphology_classes_are_document_003_codes():
    assert MORPHOLOGY_CLASSES == {
        1: "nucleus",
        2: "cytoplasm",
        3: "vacuole",
        4: "red blood cell",
        5: "background",
    }
    assert set(MORPHOLOGY_COLORS) == set(MORPHOLOGY_CLASSES)


# --------------------------------------------------------------------------- names


def test_label_names_for_present_values():
    labels = np.array([[0, 1, 5], [7, 7, 0]])
    assert label_names(labels) == {1: "nucleus", 5: "background", 7: "label 7"}
    assert label_names(labels, {7: "blast", 1: "kern"}) == {
        1: "kern",
        5: "background",
        7: "blast",
    }
    assert label_names() == MORPHOLOGY_CLASSES
    assert label_names(np.zeros((2, 2), int)) == {}


def test_label_names_refuses_float_labels():
    with pytest.raises(LabelsError, match="float64.*astype"):
        label_names(np.ones((2, 2)))


# --------------------------------------------------------------------------- suggestion


@pytest.mark.parametrize(
    ("kwargs", "floors"),
    [
        # (nucleus, whole cell, red cells, background) Dice floors below measured values
        (
            dict(
                shape=(224, 224),
                n_leukocytes=(2, 3),
                cell_diameter=40.0,
                rbc_density=0.5,
                stain="lilac",
            ),
            (0.93, 0.70, 0.85, 0.90),
        ),
        (
            dict(
                shape=(160, 160), n_leukocytes=1, cell_diameter=70.0, rbc_density=0.3, stain="pink"
            ),
            (0.93, 0.70, 0.80, 0.90),
        ),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_suggest_labels_on_synthetic_smears(kwargs, floors, seed):
    smear = make_smear(seed=seed, **kwargs)
    draft = suggest_labels(smear.image)
    truth = smear.labels
    assert draft.shape == truth.shape and draft.dtype == np.uint8
    assert set(np.unique(draft)) <= set(MORPHOLOGY_CLASSES)
    got = (
        dice(draft == 1, truth == 1),
        dice((draft >= 1) & (draft <= 3), (truth >= 1) & (truth <= 3)),
        dice(draft == 4, truth == 4),
        dice(draft == 5, truth == 5),
    )
    for name, value, floor in zip(
        ("nucleus", "cell", "rbc", "background"), got, floors, strict=True
    ):
        assert value >= floor, f"{name} Dice {value:.3f} < {floor}"


def test_suggest_labels_field_without_leukocytes_has_no_nucleus():
    smear = make_smear(seed=2, shape=(160, 160), n_leukocytes=0, rbc_density=0.6)
    draft = suggest_labels(smear.image)
    assert not (draft == 1).any()
    assert dice(draft == 4, smear.labels == 4) > 0.8


_FALSE_NUCLEUS = pytest.mark.xfail(
    strict=True,
    reason="known regression of the faint stain threshold: sparse red cells with faint rims "
    "(seed 5, density 0.4) pass the nucleus contrast and hue tests",
)


@pytest.mark.parametrize("seed", [0, 1, 3, pytest.param(5, marks=_FALSE_NUCLEUS)])
@pytest.mark.parametrize("stain", ["lilac", "pink"])
def test_suggest_labels_red_cells_only_never_get_a_nucleus(seed, stain):
    """Overlapping red cells are darker but not differently coloured: no nucleus."""
    smear = make_smear(seed=seed, shape=(160, 160), n_leukocytes=0, rbc_density=0.4, stain=stain)
    assert not (suggest_labels(smear.image) == 1).any()


def test_faint_threshold_lies_between_slide_noise_and_pale_cytoplasm():
    from napari_leukemia.labels import _stain_thresholds

    rng = np.random.default_rng(0)
    density = np.zeros((100, 100))
    density[20:80, 20:80] = 0.3  # pale cytoplasm
    density[26:74, 26:74] = 4.0  # dark nucleus
    density = np.abs(density + rng.normal(0.0, 0.01, density.shape))
    faint, dense = _stain_thresholds(density)
    slide, cytoplasm = density[density < 0.1], density[(density > 0.1) & (density < 1.0)]
    assert slide.max() < faint < cytoplasm.min() and faint <= dense


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(sigma=1e6), r"sigma must be within \[0, 25\]"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(sigma="2"), "sigma must be a number"),
        (dict(hysteresis=0), r"hysteresis must be within \(0, 1\]"),
        (dict(hysteresis=1.5), "hysteresis"),
        (dict(min_contrast=0.5), "min_contrast"),
        (dict(min_angle=180.0), "min_angle"),
        (dict(lobe_gap=-0.1), "lobe_gap"),
        (dict(max_cytoplasm=0.0), "max_cytoplasm"),
        (dict(max_cytoplasm=float("inf")), "max_cytoplasm"),
        (dict(background_order=3), "background_order"),
        (dict(background_order=True), "background_order"),
    ],
)
def test_suggest_labels_refuses_out_of_range_parameters(kwargs, match):
    image = np.full((4000, 4000, 3), 200, np.uint8)  # checked before any pixel work
    with pytest.raises(ValueError, match=match):
        suggest_labels(image, **kwargs)


def test_suggest_labels_blank_image_is_background():
    assert (suggest_labels(np.full((40, 50, 3), 230, np.uint8)) == 5).all()


def test_suggest_labels_input_types_and_no_mutation():
    smear = make_smear(seed=4, shape=(128, 128), n_leukocytes=1, cell_diameter=50.0)
    image = smear.image.copy()
    rgb = suggest_labels(image)
    assert np.array_equal(image, smear.image)  # input untouched
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    assert np.array_equal(suggest_labels(rgba), rgb)
    as_float = suggest_labels(image / 255.0)
    assert dice(as_float == 1, rgb == 1) > 0.98
    gray = suggest_labels(image.mean(axis=-1).astype(np.uint8))
    assert gray.shape == image.shape[:2]
    with pytest.raises(ImageError, match="stack"):
        suggest_labels(np.stack([image, image]))
    with pytest.raises(ValueError, match="hysteresis"):
        suggest_labels(image, hysteresis=0)


def test_suggest_labels_on_zheng_images(shared_data):
    """A handful of expert-masked images; floors sit under the measured means."""
    from PIL import Image

    folder = shared_data / "wbc_seg_zheng2018" / "dataset1"
    images = sorted((folder / "images").glob("*.bmp"))[5::37]
    if not images:
        pytest.skip(f"Zheng dataset1 images not found under {folder}")
    nucleus, cell = [], []
    for path in images:
        image = np.asarray(Image.open(path).convert("RGB"))
        truth = np.asarray(Image.open(folder / "masks" / f"{path.stem}.png"))
        draft = suggest_labels(image)
        nucleus.append(dice(draft == 1, truth >= 192))
        cell.append(dice((draft >= 1) & (draft <= 3), truth >= 64))
    # measured (stain-robust thresholds): see benchmarks/suggest_labels_accuracy.py
    assert np.mean(nucleus) >= 0.90, nucleus
    assert np.mean(cell) >= 0.90, cell


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_save_and_load_keep_values_and_names(tmp_path, suffix):
    labels = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    path = save_labels(tmp_path / f"labels{suffix}", labels)
    back, names = load_labels(path)
    assert np.array_equal(back, labels)
    assert names == {k: MORPHOLOGY_CLASSES[k] for k in range(1, 6)}


@pytest.mark.parametrize(("suffix", "top"), [(".png", 300), (".png", 65535), (".tif", 70000)])
def test_large_values_survive(tmp_path, suffix, top):
    labels = np.array([[0, 1], [top, 2]], np.int64)
    names = {top: "cell 42", 1: "kern", 9: "not painted yet"}
    path = save_labels(tmp_path / f"big{suffix}", labels, names)
    back, got = load_labels(path)
    assert np.array_equal(back, labels) and back.dtype.kind == "u"
    assert got == {1: "kern", 2: "cytoplasm", 9: "not painted yet", top: "cell 42"}


def test_png_too_large_values_are_refused(tmp_path):
    with pytest.raises(LabelsError, match=r"\.tif"):
        save_labels(tmp_path / "x.png", np.array([[70000]]))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_never_overwrite_without_asking(tmp_path):
    path = save_labels(tmp_path / "mask.png", np.ones((4, 4), np.uint8))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_labels(path, np.full((4, 4), 2, np.uint8))
    assert path.read_bytes() == before
    save_labels(path, np.full((4, 4), 2, np.uint8), overwrite=True)
    assert (load_labels(path)[0] == 2).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]  # no temp left


@pytest.mark.parametrize(
    ("labels", "name", "match"),
    [
        (np.ones((3, 3)), "f.png", "dtype float64"),
        (-np.ones((3, 3), int), "n.png", "negative"),
        (np.ones((2, 3, 3), np.uint8), "s.png", "write_labels_zarr"),
        (np.ones((3, 3), np.uint8), "x.jpg", r"\.png, \.tif"),
    ],
)
def test_save_refuses_bad_labels(tmp_path, labels, name, match):
    with pytest.raises(LabelsError, match=match):
        save_labels(tmp_path / name, labels)


def test_load_plain_files_and_bad_files(tmp_path):
    from PIL import Image

    Image.fromarray(np.array([[0, 4], [5, 9]], np.uint8)).save(tmp_path / "plain.png")
    labels, names = load_labels(tmp_path / "plain.png")
    assert names == {4: "red blood cell", 5: "background", 9: "label 9"}
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(LabelsError, match="RGB"):
        load_labels(tmp_path / "rgb.png")
    with pytest.raises(FileNotFoundError):
        load_labels(tmp_path / "missing.png")


def test_names_are_stored_inside_the_png(tmp_path):
    from PIL import Image

    path = save_labels(tmp_path / "m.png", np.array([[1, 2]], np.uint8), {2: "cyto"})
    with Image.open(path) as img:
        stored = json.loads(img.info[NAMES_KEY])
    assert stored == {"1": "nucleus", "2": "cyto"}


def test_zarr_roundtrip_keeps_other_arrays(tmp_path):
    import zarr

    store = tmp_path / "results.zarr"
    root = zarr.open_group(str(store), mode="a")
    image = root.create_array("img_001/image", shape=(6, 7, 3), dtype="uint8", chunks=(6, 7, 3))
    image[...] = 7
    labels = np.arange(42, dtype=np.uint16).reshape(6, 7) % 6
    write_labels_zarr(store, "img_001/labels", labels, {3: "vacuole (clear)"})
    back, names = read_labels_zarr(store, "img_001/labels")
    assert np.array_equal(back, labels) and back.dtype == np.uint16
    assert names[3] == "vacuole (clear)" and names[1] == "nucleus"
    assert (zarr.open_group(str(store), mode="r")["img_001/image"][...] == 7).all()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_labels_zarr(store, "img_001/labels", labels * 0)
    assert np.array_equal(read_labels_zarr(store, "img_001/labels")[0], labels)
    write_labels_zarr(store, "img_001/labels", labels * 0, overwrite=True)
    assert not read_labels_zarr(store, "img_001/labels")[0].any()
    with pytest.raises(KeyError, match="no array"):
        read_labels_zarr(store, "img_002/labels")
    with pytest.raises(LabelsError, match="float"):
        write_labels_zarr(store, "f", np.ones((2, 2)))


def test_suggested_white_cells_are_the_detected_ones_on_real_fields(shared_data):
    """A lone Pre-B blast among bluish red cells is drafted as a cell with a nucleus,
    and every drafted white cell lies on a cell the detector found."""
    from scipy import ndimage as ndi

    from napari_leukemia.cells import cells_to_labels, detect_cells
    from napari_leukemia.images import read_image

    for name in ("Pre/WBC-Malignant-Pre-001.jpg", "Pre/WBC-Malignant-Pre-004.jpg"):
        path = shared_data / "all4" / name
        if not path.exists():
            pytest.skip(f"{path} not found")
        image = read_image(path)
        labels = suggest_labels(image)
        detected = cells_to_labels(detect_cells(image), image.shape)
        assert detected.max() >= 1
        for index in range(1, detected.max() + 1):
            assert (labels[detected == index] == 1).any(), (name, index)
        white = np.isin(labels, (1, 2, 3))
        drafted, n = ndi.label(white)
        near = ndi.binary_dilation(detected > 0, iterations=3)
        for k in range(1, n + 1):
            assert (near & (drafted == k)).any(), (name, k)
