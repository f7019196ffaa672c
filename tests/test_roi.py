import numpy as np
import pytest

from napari_leukemia.roi import extract_roi, square_window


def ramp_image(rows=100, cols=120):
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([r / rows, c / cols, np.zeros_like(r, float)], axis=-1)


def test_crop_without_resize_is_exact():
    image = ramp_image()
    roi, transform = extract_roi(image, (40, 50, 60, 70), size=20, margin=0.0)
    np.testing.assert_allclose(roi, image[40:60, 50:70])
    assert transform.scale == (1.0, 1.0)
    assert transform.origin == (40.0, 50.0)


def test_transform_maps_roi_back_onto_the_image():
    image = ramp_image()
    bbox = (30, 40, 50, 70)  # 20 x 30 cell -> square window of side 30 * 1.2 = 36
    roi, transform = extract_roi(image, bbox, size=72, margin=0.1)
    assert roi.shape == (72, 72, 3)
    assert transform.scale == pytest.approx((0.5, 0.5))
    centre = transform.to_image(np.array([[35.5, 35.5]]))[0]
    assert centre == pytest.approx([40.0, 55.0 - 0.5 + 0.5 * 0], abs=0.51)
    # values sampled in the ROI equal the image at the mapped location (linear ramp)
    point = np.array([[10.0, 60.0]])
    row, col = transform.to_image(point)[0]
    assert roi[10, 60, 0] == pytest.approx(row / 100, abs=0.01)
    assert roi[10, 60, 1] == pytest.approx(col / 120, abs=0.01)
    np.testing.assert_allclose(transform.to_roi(transform.to_image(point)), point)


def test_window_past_the_edge_is_padded_with_background():
    image = np.full((50, 50, 3), 0.9)
    image[:10, :10] = 0.1  # a dark cell in the corner
    roi, transform = extract_roi(image, (0, 0, 10, 10), size=30, margin=0.5)
    assert transform.origin == (-5.0, -5.0)
    assert roi[0, 0, 0] == pytest.approx(0.9)  # padding = slide colour, not black
    assert roi[15, 15, 0] == pytest.approx(0.1)


def test_image_smaller_than_roi_is_upsampled():
    image = np.random.default_rng(1).random((20, 20))
    roi, transform = extract_roi(image, (5, 5, 15, 15), size=224)
    assert roi.shape == (224, 224)
    assert transform.scale[0] < 1


def test_bad_boxes_are_explained():
    with pytest.raises(ValueError, match="empty"):
        square_window((5, 5, 5, 9), 0.1, (20, 20))
    with pytest.raises(ValueError, match="outside"):
        square_window((30, 30, 40, 40), 0.1, (20, 20))
    with pytest.raises(ValueError, match="margin"):
        extract_roi(np.zeros((20, 20)), (1, 1, 5, 5), margin=-1)


def test_source_pixels_are_the_whole_image_converted_then_cut():
    """A window converted alone equals the same window of the converted whole image,
    for every value convention (the range comes from the whole image, not the window)."""
    import warnings

    from napari_leukemia.images import ImageWarning, as_rgb
    from napari_leukemia.roi import RoiSource

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    images = [
        rgb,
        rgb[..., 0],  # gray
        np.dstack([rgb, rng.integers(0, 256, (50, 60), dtype=np.uint8)]),  # RGBA
        rgb / 255.0,
        rgb.astype(np.uint16) * 200,  # 16-bit
        rgb.astype(np.float32) * 3.7 - 20.0,  # min-max scaled
    ]
    for image in images:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageWarning)
            whole = as_rgb(image)
            source = RoiSource.of(image, rgb=True, padded=False)
        window = source.pixels(7, 11, 31, 52)
        assert window.dtype == whole.dtype
        assert np.array_equal(window, whole[7:31, 11:52])
