"""The detector's fast stand-ins (`napari_leukemia._morphology`) return exactly what the
scipy / scikit-image calls they replace return, on random masks of every kind: blobs,
noise, ellipses, single pixels, plateaus and ties. A library update that changes those
calls fails here, not silently in the detector's masks."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure
from skimage.feature import peak_local_max
from skimage.morphology import convex_hull_image

from napari_leukemia import _morphology as fast

CROSS = ndi.generate_binary_structure(2, 1)


def _random_masks(seed: int, n: int, largest: int = 40):
    rng = np.random.default_rng(seed)
    for trial in range(n):
        shape = tuple(int(v) for v in rng.integers(1, largest, 2))
        kind = trial % 4
        if kind == 0:
            mask = rng.random(shape) > rng.uniform(0.3, 0.99)
        elif kind == 1:
            blurred = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 4))
            mask = blurred > rng.uniform(0.4, 0.6)
        elif kind == 2:
            yy, xx = np.mgrid[: shape[0], : shape[1]]
            cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(0.3, 30)
            mask = (yy - cy) ** 2 / rng.uniform(0.3, 3) + (xx - cx) ** 2 < r * r
        else:
            mask = np.zeros(shape, bool)
            for _ in range(int(rng.integers(1, 4))):
                mask[rng.integers(0, shape[0]), rng.integers(0, shape[1])] = True
        yield rng, mask


def test_cross_morphology_and_perimeter_equal_scipy_and_skimage():
    for _, mask in _random_masks(0, 1500):
        assert np.array_equal(fast.erode_cross(mask), ndi.binary_erosion(mask, CROSS))
        assert np.array_equal(
            fast.dilate_cross(mask, 2), ndi.binary_dilation(mask, CROSS, iterations=2)
        )
        assert np.array_equal(fast.open_cross(mask), ndi.binary_opening(mask, CROSS))
        ours, theirs = fast.perimeter(mask), measure.perimeter(mask)
        assert ours == theirs and type(ours) is type(theirs)


@pytest.mark.parametrize("min_distance", [1, 2, 3])
def test_peaks_in_mask_equal_peak_local_max_with_ties_and_plateaus(min_distance):
    found = 0
    for rng, mask in _random_masks(1, 800):
        distance = ndi.distance_transform_edt(mask)
        ties = np.round(rng.random(mask.shape) * 3)  # plateaus and equal peaks
        for image, threshold in ((distance, 1.0), (distance, float(distance.min())),
                                 (ties, 0.5)):  # fmt: skip
            labels = mask.astype(np.int32)
            expected = peak_local_max(
                image, min_distance=min_distance, threshold_abs=threshold, labels=labels
            )
            got = fast.peaks_in_mask(image, mask, min_distance, threshold)
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
            found += len(expected)
    assert found > 1000  # the comparison saw many peaks, not only empty results


def test_convex_area_counts_the_pixels_of_skimages_convex_hull():
    compared = 0
    for _, mask in _random_masks(2, 5000, largest=50):
        if mask.any():
            assert fast.convex_area(mask) == np.count_nonzero(convex_hull_image(mask))
            compared += 1
    assert compared > 4000
