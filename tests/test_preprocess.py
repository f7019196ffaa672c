import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage.color import rgb2gray

from napari_leukemia import preprocess
from napari_leukemia.images import ImageError, as_rgb, to_float


@pytest.fixture
def rgb_uint8():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    return cv2.GaussianBlur(base, (3, 3), 0)  # some structure, not pure noise


def test_grayscale_matches_opencv_and_skimage(rgb_uint8):
    ours = preprocess.grayscale(rgb_uint8)
    theirs = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY) / 255.0
    assert np.abs(ours - theirs).max() <= 0.5 / 255 + 1e-9  # OpenCV rounds to 8 bits
    np.testing.assert_allclose(
        preprocess.grayscale(rgb_uint8, weights="bt709"), rgb2gray(rgb_uint8), atol=1e-3
    )


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9, 11])
@pytest.mark.parametrize("sigma", [0.0, 0.8, 2.0])
def test_gaussian_kernel_matches_opencv(size, sigma):
    expected = cv2.getGaussianKernel(size, sigma, cv2.CV_64F).ravel()
    np.testing.assert_allclose(preprocess.gaussian_kernel(size, sigma), expected, atol=1e-12)


def test_unsharp_mask_reproduces_document_000(rgb_uint8):
    gray = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY) / 255.0
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)
    expected = np.clip(cv2.addWeighted(gray, 1.5, blurred, -0.2, 0), 0, 1)
    np.testing.assert_allclose(preprocess.unsharp_mask(gray), expected, atol=1e-9)


def test_document000_pipeline_matches_reference(rgb_uint8):
    image = cv2.resize(rgb_uint8, (224, 224), interpolation=cv2.INTER_NEAREST)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) / 255.0
    expected = np.clip(
        cv2.addWeighted(gray, 1.5, cv2.GaussianBlur(gray, (5, 5), 0), -0.2, 0), 0, 1
    )
    ours = preprocess.document000_pipeline(image)
    assert ours.shape == (224, 224, 1) and ours.dtype == np.float32
    assert np.abs(ours[..., 0] - expected).max() < 1.5 / 255


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("shape", [(25, 31), (64, 64), (150, 170)])
def test_colour_resize_is_scikit_image_resize_of_the_whole_array(rgb_uint8, shape, order):
    """Channel by channel gives exactly scikit-image's numbers, growing and shrinking."""
    from skimage.transform import resize as sk_resize

    rgba = np.dstack([rgb_uint8, rgb_uint8[..., :1]])  # 4 channels, as any channel count
    for image in (to_float(rgb_uint8), to_float(rgba)):
        ours = preprocess.resize(image, shape, order=order)
        theirs = sk_resize(image, shape, order=order, anti_aliasing=True, preserve_range=True)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_colour_resize_never_mixes_channels(rgb_uint8, order):
    image = to_float(rgb_uint8)
    changed = image.copy()
    changed[..., 0] = 1.0 - changed[..., 0]
    before, after = (preprocess.resize(x, (90, 100), order=order) for x in (image, changed))
    assert np.array_equal(before[..., 1:], after[..., 1:])
    assert not np.array_equal(before[..., 0], after[..., 0])


def test_unsharp_parameters_change_result(rgb_uint8):
    gray = preprocess.grayscale(rgb_uint8)
    assert not np.allclose(preprocess.unsharp_mask(gray), preprocess.unsharp_mask(gray, 2.0, -1.0))
    identity = preprocess.unsharp_mask(gray, image_weight=1.0, blur_weight=0.0)
    np.testing.assert_allclose(identity, gray)


def test_functions_do_not_modify_input(rgb_uint8):
    copy = rgb_uint8.copy()
    preprocess.grayscale(rgb_uint8)
    preprocess.normalize(rgb_uint8, "percentile")
    preprocess.unsharp_mask(rgb_uint8)
    np.testing.assert_array_equal(copy, rgb_uint8)


def test_normalize_minmax_and_percentile():
    image = np.linspace(10, 20, 101).reshape(1, 101)
    out = preprocess.normalize(image)
    assert out.min() == 0.0 and out.max() == 1.0
    image[0, 0] = 1000.0  # one hot pixel must not squash the rest
    robust = preprocess.normalize(image, "percentile", 1, 99)
    assert robust[0, 50] == pytest.approx(0.5, abs=0.05)
    assert preprocess.normalize(np.full((4, 4), 7.0)).max() == 0.0
    with pytest.raises(ValueError, match="low < high"):
        preprocess.normalize(image, "percentile", 90, 10)


def test_dtypes_and_channels():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent over a white slide
    np.testing.assert_allclose(as_rgb(rgba), 1.0)
    assert to_float(np.full((2, 2), 65535, np.uint16)).max() == 1.0
    assert to_float(np.array([[0.0, 500.0]])).tolist() == [[0.0, 1.0]]
    assert to_float(np.array([[0.0, 127.5, 255.0]])).tolist() == [[0.0, 0.5, 1.0]]
    gray = preprocess.grayscale(np.full((5, 5), 128, np.uint8))
    assert gray.shape == (5, 5)


@pytest.mark.parametrize(
    "shape, message",
    [((3, 16, 16, 3), "stack"), ((5, 16, 16), "stack"), ((16, 16, 1), "single channel")],
)
def test_stacks_are_refused_with_a_message(shape, message):
    with pytest.raises(ImageError, match=message):
        preprocess.grayscale(np.zeros(shape, np.uint8))


def test_nan_images_are_refused():
    image = np.zeros((4, 4))
    image[1, 1] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        preprocess.unsharp_mask(image)


def test_import_is_light():
    code = (
        "import sys, time; t = time.perf_counter(); import napari_leukemia as nl; "
        "dt = time.perf_counter() - t; nl.grayscale; nl.extract_roi; "
        "heavy = [m for m in ('tensorflow', 'keras', 'qtpy', 'napari') if m in sys.modules]; "
        "print(heavy, dt)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, seconds = out.stdout.rsplit(" ", 1)
    assert heavy == "[]", out.stdout
    assert float(seconds) < 0.5
