"""Bad inputs from issue 14: each test checks one claim of the issue exactly."""

import re
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from PIL import Image

from napari_leukemia.cells import detect_cells
from napari_leukemia.images import ImageError, ImageWarning, check_2d, read_image, to_float
from napari_leukemia.model.metadata import ModelInfo, benign_indices, malignant_probability
from napari_leukemia.preprocess import gaussian_kernel, unsharp_mask
from napari_leukemia.roi import RoiSource, RoiWarning, extract_roi
from napari_leukemia.synthetic import make_smear

HUGE = (0, 0, 20000, 20000)


@pytest.fixture(scope="module")
def field():
    """A 480x640 uint8 RGB smear (the BCCD field size of the issue)."""
    return np.ascontiguousarray(np.tile(make_smear(seed=0).image, (3, 3, 1))[:480, :640])


def peak_mib(function, *args, **kwargs):
    """(result, peak traced memory in MiB) of one call."""
    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ 7: huge bbox
def test_extract_roi_clips_a_huge_bbox_with_a_warning_and_bounded_memory(field):
    with pytest.warns(RoiWarning, match=r"clipped to \(0, 0, 480, 640\)"):
        (roi, transform), peak = peak_mib(extract_roi, field, HUGE, size=64)
    assert peak < 64, f"{peak:.0f} MiB for a 480x640 image"
    expected, expected_transform = extract_roi(field, (0, 0, 480, 640), size=64)
    assert np.array_equal(roi, expected) and transform == expected_transform


def test_bbox_must_be_four_finite_numbers(field):
    with pytest.raises(ValueError, match="four finite numbers"):
        extract_roi(field, (0, 0, np.nan, 10))
    with pytest.raises(ValueError, match="four finite numbers"):
        extract_roi(field, (0, 0, 10))


@pytest.fixture(scope="module")
def bundled():
    from napari_leukemia.model.classify import load_model

    return load_model()


def test_classify_clips_a_huge_bbox_and_says_so_in_a_note(field, bundled):
    from napari_leukemia.model.classify import classify

    result, peak = peak_mib(classify, field, bundled, bbox=HUGE)
    assert peak < 256, f"{peak:.0f} MiB"
    assert any("clipped to (0, 0, 480, 640)" in note for note in result.notes)
    clipped = classify(field, bundled, bbox=(0, 0, 480, 640))
    assert result.probabilities == clipped.probabilities


def test_explain_clips_a_huge_bbox(field, bundled):
    from napari_leukemia.explain import explain

    with pytest.warns(RoiWarning, match="clipped"):
        huge = explain(field, "gradient", bundled, bbox=HUGE)
    assert np.array_equal(huge, explain(field, "gradient", bundled, bbox=(0, 0, 480, 640)))


# ------------------------------------------------------------------ 9: thin strips
@pytest.mark.parametrize("shape", [(1, 2560, 3), (2, 5120, 3), (1, 2560), (2560, 1, 3)])
def test_detect_cells_on_thin_strips_returns_no_cells(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert detect_cells(image) == []


# ------------------------------------------------------------------ 10: benign unknown
def test_malignant_probability_is_nan_when_no_class_is_benign():
    probs = np.array([0.7, 0.2, 0.1])
    names = ["class 0", "class 1", "class 2"]
    assert benign_indices(names, ["Benign"]) is None
    assert np.isnan(malignant_probability(probs, names, ["Benign"]))
    assert ModelInfo(class_names=["normal", "ALL"]).benign_indices is None


def test_malignant_probability_follows_the_metadata_benign_classes():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert malignant_probability(probs, ["normal", "ALL"], ["Normal"]).tolist() == [0.3, 0.8]
    # an explicitly empty list: every class is malignant, and that is known
    assert malignant_probability(probs, ["L1", "L2"], []).tolist() == [1.0, 1.0]


def _user_model(tmp_path, n_classes, class_names=None, benign=None):
    """A tiny untrained field model with `n_classes` outputs, optionally with metadata."""
    from napari_leukemia.model.backend import keras_module
    from napari_leukemia.model.metadata import InputSpec, write_info

    keras = keras_module()
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"user{n_classes}.keras"
    model.save(path)
    if class_names is not None:
        info = ModelInfo(class_names=class_names, input=InputSpec("field", (16, 16), "rgb"))
        if benign is not None:
            info.benign_classes = benign
        write_info(path, info)
    return path


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classify_with_a_user_model_without_metadata_says_p_malignant_is_unknown(
    tmp_path, field, n_classes
):
    from napari_leukemia.model.classify import classify

    result = classify(field, _user_model(tmp_path, n_classes))
    assert np.isnan(result.malignant_probability) and result.malignant is None
    assert any("P(malignant) is unknown" in note for note in result.notes)
    assert result.as_dict()["malignant"] is None
    assert f"{result.as_dict()['malignant_probability']:.3f}" == "nan"  # CLI/widget format


def test_classify_with_renamed_classes_uses_the_metadata(tmp_path, field):
    from napari_leukemia.model.classify import classify

    unknown = classify(field, _user_model(tmp_path, 2, ["normal", "blast"]))
    assert np.isnan(unknown.malignant_probability)
    named = classify(field, _user_model(tmp_path / "b", 2, ["normal", "blast"], ["normal"]))
    assert named.malignant_probability == pytest.approx(named.probabilities["blast"])
    assert named.malignant == (named.probabilities["blast"] >= 0.5)


# ------------------------------------------------------------------ 12: value ranges
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint32, np.uint16])
def test_integer_images_with_8_bit_values_use_the_8_bit_scale_and_say_so(dtype):
    values = np.array([[0, 64, 128, 255]])
    with pytest.warns(ImageWarning, match="taken as 8-bit"):
        out = to_float(values.astype(dtype))
    assert np.allclose(out, values / 255.0)


def test_lists_of_8_bit_values_are_images():
    with pytest.warns(ImageWarning, match="taken as 8-bit"):
        out = to_float([[0, 128], [255, 64]])
    assert np.allclose(out, np.array([[0, 128], [255, 64]]) / 255.0)
    check_2d([[0, 1], [2, 3]])


def test_uint8_and_float_in_unit_range_need_no_note():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_float(np.array([[0, 255]], np.uint8))
        to_float(np.array([[0.0, 1.0]]))


def test_wider_integer_ranges():
    with pytest.warns(ImageWarning, match="16-bit"):
        assert np.allclose(to_float(np.array([[0, 4095]], np.int32)), [[0, 4095 / 65535]])
    with pytest.warns(ImageWarning, match="own maximum"):
        assert np.allclose(to_float(np.array([[0, 50000, 100000]], np.int64)), [[0, 0.5, 1]])
    with pytest.warns(ImageWarning, match="negative"):
        assert np.allclose(to_float(np.array([[-10, 0, 10]], np.int16)), [[0, 0.5, 1]])


def test_a_text_array_is_refused():
    with pytest.raises(ImageError, match="not numbers"):
        to_float(np.array([["a", "b"]]))


# ------------------------------------------------------------------ 13: file modes
def test_cmyk_jpeg_is_read_as_its_rgb_colours(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 24), (0, 200, 50, 40)).save(path, quality=95)
    image = read_image(path)
    expected = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    assert np.abs(image - expected).max() <= 1
    assert image.mean() < 200  # a colour, not a blank white field


def test_palette_gray_alpha_and_16_bit_pngs(tmp_path):
    palette = Image.new("RGB", (8, 8), (200, 30, 90)).quantize(4)
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[0, 0].tolist() == [200, 30, 90]
    Image.new("LA", (8, 8), (100, 128)).save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png")[0, 0].tolist() == [100, 100, 100, 128]
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "16.png")
    sixteen = read_image(tmp_path / "16.png")
    assert sixteen.dtype == np.uint16 and int(sixteen[0, 0]) == 40000
    assert to_float(sixteen)[0, 0] == pytest.approx(40000 / 65535)


# ------------------------------------------------------------------ 15: pad value
def test_pad_value_is_in_the_images_own_scale(field):
    bbox = (0, 0, 60, 60)  # at the corner: the window is padded above and left
    default, _ = extract_roi(field, bbox, size=64, margin=0.5)
    white, _ = extract_roi(field, bbox, size=64, margin=0.5, pad_value=255)
    assert white.max() <= 1.0 and white[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(white[-20:, -20:], default[-20:, -20:])  # inside the image
    assert white.mean() > 0.5


def test_pad_value_outside_the_images_range_is_refused(field):
    with pytest.raises(ValueError, match=r"outside the image's value range \[0, 1\]"):
        extract_roi(field / 255.0, (0, 0, 60, 60), pad_value=255)
    with pytest.raises(ValueError, match="one per channel"):
        extract_roi(field, (0, 0, 60, 60), pad_value=[1, 2])


# ------------------------------------------------------------------ 16: unsharp params
@pytest.mark.parametrize(
    "params", [{"sigma": np.nan}, {"image_weight": np.nan}, {"blur_weight": np.inf}]
)
def test_unsharp_mask_refuses_non_finite_parameters(params):
    name = next(iter(params))
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        unsharp_mask(np.zeros((8, 8)), **params)


def test_gaussian_kernel_refuses_bad_sizes_and_sigmas():
    with pytest.raises(ValueError, match="positive odd integer"):
        gaussian_kernel(4)
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        gaussian_kernel(5, np.nan)


# ------------------------------------------------------------------ 17: nl.quantify
QUANTIFY_CALL = (
    "import numpy as np; "
    "t = nl.quantify(np.arange(16.0).reshape(4, 4), np.eye(4, dtype=int)); "
    "print(type(t).__name__)"
)


@pytest.mark.parametrize(
    "first",
    [
        "import napari_leukemia.quantify; import napari_leukemia as nl",
        "import napari_leukemia as nl; nl.quantify_many",
        "import napari_leukemia as nl; nl.quantify; import napari_leukemia.quantify as q; "
        "q.quantify_many",
    ],
)
def test_nl_quantify_is_callable_whatever_was_imported_first(first):
    out = subprocess.run(
        [sys.executable, "-c", f"{first}; {QUANTIFY_CALL}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "DataFrame"


# ------------------------------------------------------------------ 18: paths, modes
def test_classify_accepts_a_path(tmp_path, field, bundled):
    from napari_leukemia.model.classify import classify

    path = tmp_path / "field.png"
    Image.fromarray(field).save(path)
    assert classify(str(path), bundled).probabilities == classify(field, bundled).probabilities


def test_a_path_given_as_an_image_says_to_read_it():
    with pytest.raises(ImageError, match="read it first"):
        check_2d("field.png")


def test_gray_alpha_arrays_are_not_called_a_stack():
    with pytest.raises(ImageError, match="gray plus alpha") as error:
        check_2d(np.zeros((8, 8, 2)))
    assert "stack" not in str(error.value)


def test_a_truncated_png_error_names_the_file(tmp_path, field):
    path = tmp_path / "cut.png"
    Image.fromarray(field).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageError, match="cut.png"):
        read_image(path)
    with pytest.raises(ImageError, match="No image file"):
        read_image(tmp_path / "missing.png")


# ------------------------------------------------------------------ 19: ROI cost
def test_roi_memory_does_not_grow_with_the_image():
    small = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    large = np.tile(small, (16, 16, 1))  # 4096 x 4096
    peaks = []
    for image in (small, large):
        source = RoiSource.of(image, rgb=True)
        _, peak = peak_mib(source.extract, (100, 100, 140, 140), 64)
        peaks.append(peak)
    assert peaks[1] < 1.5 * peaks[0] + 1, peaks


def test_prepared_once_roi_step_matches_the_per_cell_definition(field, bundled):
    """`cell_inputs` (image prepared once) = convert(extract_roi(as_rgb(image))) for a
    model that takes the ROI with its surroundings (cell-only inputs: test_cell_context)."""
    from napari_leukemia.images import as_rgb
    from napari_leukemia.model.architectures import input_spec
    from napari_leukemia.model.inputs import cell_inputs, convert
    from napari_leukemia.roi import extract_roi

    bboxes = [c.bbox for c in detect_cells(field)[:3]] + [(0, 0, 40, 40)]
    spec = input_spec("default")
    pairs = [extract_roi(as_rgb(field), b, size=spec.size, margin=spec.margin) for b in bboxes]
    expected = np.stack([convert(roi, spec) for roi, _ in pairs])
    batch, transforms = cell_inputs(field, bboxes, spec)
    assert np.allclose(batch, expected, atol=1e-6)
    assert transforms == [t for _, t in pairs]


def test_resizing_a_large_field_to_a_model_input_is_fast_and_nearly_exact():
    import time

    from skimage.transform import resize as sk_resize

    from napari_leukemia.preprocess import resize

    image = np.tile(make_smear(seed=0).image, (10, 10, 1))[:2050, :2047] / 255.0
    start = time.perf_counter()
    small = resize(image, (64, 64))
    elapsed = time.perf_counter() - start
    exact = sk_resize(image, (64, 64, 3), order=1, anti_aliasing=True, preserve_range=True)
    assert np.abs(small - exact).mean() < 0.01 and np.abs(small - exact).max() < 0.05
    assert elapsed < 2.0


# ------------------------------------------------------------------ 18: clear messages
def test_a_truncated_tiff_error_names_the_file(tmp_path, field):
    import tifffile

    from napari_leukemia.labels import LabelsError, load_labels, save_labels

    image_path = tmp_path / "cut.tif"
    tifffile.imwrite(image_path, field)
    image_path.write_bytes(image_path.read_bytes()[: field.nbytes // 2])
    with pytest.raises(ImageError, match="cut.tif could not be read .* truncated"):
        read_image(image_path)
    labels_path = save_labels(tmp_path / "labels.tif", np.arange(600).reshape(20, 30) % 6)
    labels_path.write_bytes(labels_path.read_bytes()[:700])
    with pytest.raises(LabelsError, match=r"labels.tif could not be read .* truncated"):
        load_labels(labels_path)


def _class_folder(folder, n=2):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")


def test_evaluate_with_unknown_class_folders_names_them(tmp_path, bundled, capsys):
    from napari_leukemia.cli import main
    from napari_leukemia.model.evaluation import evaluate_folder

    _class_folder(tmp_path / "data" / "Monocyte")
    _class_folder(tmp_path / "data" / "Neutrophil")
    message = r"has no folder of the classes \['Benign', .*\['Monocyte', 'Neutrophil'\]"
    with pytest.raises(ValueError, match=message):
        evaluate_folder(tmp_path / "data", bundled)
    assert main(["evaluate", str(tmp_path / "data")]) == 2
    assert "Name each class folder after a class of the model" in capsys.readouterr().err


def test_evaluate_split_that_matches_no_image_is_refused(tmp_path, bundled):
    from napari_leukemia.model.evaluation import evaluate_folder

    _class_folder(tmp_path / "data" / "Benign")
    recorded = bundled.info.data.get("split", {}).get("test")
    if not recorded:
        pytest.skip("the bundled model's metadata records no test split")
    with pytest.raises(ValueError, match=r"None of the \d+ images of the model's 'test' split"):
        evaluate_folder(tmp_path / "data", bundled, split="test")


def test_empty_labels_with_resample_are_refused_with_a_message():
    from napari_leukemia.quantify import QuantifyError, quantify

    for shape in ((0, 0), (0, 5)):
        with pytest.raises(QuantifyError, match=r"label image is empty \(shape \(0,"):
            quantify(np.ones((4, 4)), np.zeros(shape, np.uint8), resample="labels")


@pytest.mark.parametrize("key", ["one", None, 1.5, -2, True, "²"])
def test_a_bad_label_names_key_is_named(tmp_path, key):
    from napari_leukemia.labels import LabelsError, label_names, save_labels
    from napari_leukemia.quantify import QuantifyError, quantify

    names = {key: "nucleus"}
    message = rf"the key {re.escape(repr(key))} is not a label value"
    with pytest.raises(QuantifyError, match=message):
        quantify(np.ones((4, 4)), np.ones((4, 4), np.uint8), names)
    with pytest.raises(LabelsError, match=message):
        label_names(np.ones((2, 2), np.uint8), names)
    with pytest.raises(LabelsError, match=message):
        save_labels(tmp_path / "l.png", np.ones((2, 2), np.uint8), names)
    assert not list(tmp_path.iterdir())


def test_label_names_keys_from_json_or_floats_still_work():
    from napari_leukemia.labels import label_names

    names = label_names(np.array([[1, 2, 7]]), {"7": "blast", 2.0: "cyto", np.int64(1): "nuc"})
    assert names == {1: "nuc", 2: "cyto", 7: "blast"}


# ------------------------------------------------------------------ 20: size limit
def test_classify_refuses_a_whole_image_past_the_size_limit(tmp_path, field, bundled, capsys):
    from napari_leukemia.cli import main
    from napari_leukemia.images import MAX_PIXELS
    from napari_leukemia.model.classify import classify

    huge = np.zeros((MAX_PIXELS // 5000 + 1, 5000), np.uint8)  # not a byte is touched
    with pytest.raises(ImageError, match=r"5001 x 5000 = 25,005,000 pixels.*napari-leukemia ba"):
        classify(huge, None)  # refused before any model is loaded
    path = tmp_path / "huge.png"
    Image.fromarray(huge).save(path)
    with pytest.raises(ImageError, match="max_pixels=None"):
        classify(path, bundled)  # a file is refused from its header
    assert main(["predict", str(path)]) == 1
    assert "huge.png: ERROR The image is 5001 x 5000" in capsys.readouterr().out
    cell = classify(huge, bundled, bbox=(100, 100, 160, 160))  # one cell: fine at any size
    assert cell.kind == "cell"


def test_the_size_limit_can_be_set_or_switched_off(field, bundled):
    from napari_leukemia.model.classify import classify

    with pytest.raises(ImageError, match=r"480 x 640 = 307,200 pixels.*\(100,000 pixels"):
        classify(field, bundled, max_pixels=100_000)
    whole = classify(field, bundled, max_pixels=None)
    assert whole.probabilities == classify(field, bundled).probabilities
    with pytest.raises(ImageError, match="max_pixels must be a whole number"):
        classify(field, bundled, max_pixels=2.5e7)
