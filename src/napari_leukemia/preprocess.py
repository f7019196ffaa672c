"""Preprocessing of smear images: grayscale, normalize, unsharp mask, resize.

Pure functions: numpy arrays in, new float arrays out; inputs are never modified.
The defaults reproduce document 000's pipeline (OpenCV ``cvtColor`` RGB→gray,
``GaussianBlur(image, (5, 5), 0)`` and ``addWeighted(image, 1.5, blurred, -0.2, 0)``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from .images import ImageError, as_rgb, check_2d, is_rgb, to_float

#: Luma weights for RGB → gray. "bt601" is OpenCV's ``COLOR_RGB2GRAY`` (document 000);
#: "bt709" is scikit-image's ``rgb2gray``.
LUMA_WEIGHTS = {
    "bt601": (0.299, 0.587, 0.114),
    "bt709": (0.2125, 0.7154, 0.0721),
}

# OpenCV's fixed kernels used by getGaussianKernel when sigma <= 0 and ksize <= 9.
_OPENCV_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)),
}


def grayscale(image: np.ndarray, weights: Literal["bt601", "bt709"] = "bt601") -> np.ndarray:
    """Return the luminance of an RGB or RGBA image as float in [0, 1].

    Parameters
    ----------
    image : (rows, cols[, 3|4]) array of any integer or float dtype.
        A 2-D gray image is returned as float unchanged in shape.
    weights : "bt601" or "bt709"
        "bt601" (0.299, 0.587, 0.114) matches OpenCV and document 000;
        "bt709" matches ``skimage.color.rgb2gray``.
    """
    if weights not in LUMA_WEIGHTS:
        raise ValueError(f"weights must be one of {sorted(LUMA_WEIGHTS)}, not {weights!r}.")
    check_2d(image)
    if not is_rgb(image):
        return to_float(image)
    rgb = as_rgb(image)
    return rgb @ np.asarray(LUMA_WEIGHTS[weights])


def normalize(
    image: np.ndarray,
    method: Literal["minmax", "percentile"] = "minmax",
    low: float = 1.0,
    high: float = 99.0,
) -> np.ndarray:
    """Stretch intensities to [0, 1].

    Parameters
    ----------
    method : "minmax" maps the minimum to 0 and the maximum to 1; "percentile" maps
        the `low` and `high` percentiles (0–100) to 0 and 1 and clips the rest, which
        ignores a few saturated or dead pixels.
    low, high : percentiles used by the "percentile" method, ``0 <= low < high <= 100``.

    A constant image becomes all zeros. Colour images are stretched jointly over all
    channels so that hues are preserved.
    """
    check_2d(image)
    array = to_float(image)
    if method == "minmax":
        lo, hi = float(array.min()), float(array.max())
    elif method == "percentile":
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"Need 0 <= low < high <= 100, got low={low}, high={high}.")
        lo, hi = (float(v) for v in np.percentile(array, [low, high]))
    else:
        raise ValueError(f"method must be 'minmax' or 'percentile', not {method!r}.")
    if hi <= lo:
        return np.zeros_like(array)
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0)


def _check_finite(**params) -> None:
    """Raise ValueError naming any parameter that is not a finite real number."""
    for name, value in params.items():
        try:
            ok = not isinstance(value, bool) and np.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a finite number, got {value!r}.")


def gaussian_kernel(size: int = 5, sigma: float = 0.0) -> np.ndarray:
    """Return OpenCV's 1-D Gaussian kernel (``cv2.getGaussianKernel``).

    With ``sigma <= 0`` the sigma is derived from the size as OpenCV does,
    ``0.3 * ((size - 1) * 0.5 - 1) + 0.8``; for sizes 1–9 OpenCV then uses its fixed
    kernels (e.g. [1, 4, 6, 4, 1] / 16 for size 5), and so do we.
    """
    if isinstance(size, bool) or not float(size).is_integer() or size < 1 or size % 2 == 0:
        raise ValueError(f"Kernel size must be a positive odd integer, got {size!r}.")
    size = int(size)
    _check_finite(sigma=sigma)
    if sigma <= 0 and size in _OPENCV_SMALL_KERNELS:
        return np.asarray(_OPENCV_SMALL_KERNELS[size])
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, size: int = 5, sigma: float = 0.0) -> np.ndarray:
    """Blur a 2-D float image like ``cv2.GaussianBlur(image, (size, size), sigma)``.

    Separable convolution with `gaussian_kernel`, borders reflected without repeating
    the edge pixel (OpenCV's default ``BORDER_REFLECT_101``).
    """
    kernel = gaussian_kernel(size, sigma)
    blurred = ndimage.correlate1d(np.asarray(image, float), kernel, axis=0, mode="mirror")
    return ndimage.correlate1d(blurred, kernel, axis=1, mode="mirror")


def unsharp_mask(
    image: np.ndarray,
    image_weight: float = 1.5,
    blur_weight: float = -0.2,
    kernel_size: int = 5,
    sigma: float = 0.0,
) -> np.ndarray:
    """Sharpen: ``clip(image_weight * image + blur_weight * blurred, 0, 1)``.

    The defaults are document 000's ``cv2.addWeighted(image, 1.5, blurred, -0.2, 0)``
    with ``blurred = cv2.GaussianBlur(image, (5, 5), 0)``. Colour images are sharpened
    per channel. The input is converted to float in [0, 1] first.
    """
    _check_finite(image_weight=image_weight, blur_weight=blur_weight, sigma=sigma)
    gaussian_kernel(kernel_size, sigma)  # validates size and sigma before any work
    check_2d(image)
    array = to_float(image)
    if array.ndim == 2:
        blurred = gaussian_blur(array, kernel_size, sigma)
    else:
        blurred = np.stack(
            [gaussian_blur(array[..., c], kernel_size, sigma) for c in range(array.shape[-1])],
            axis=-1,
        )
    return np.clip(image_weight * array + blur_weight * blurred, 0.0, 1.0)


def resize(image: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize a 2-D gray or colour image to ``shape = (rows, cols)`` as float.

    `order` is the spline order (0 nearest, 1 bilinear, 3 bicubic). Anti-aliasing is
    applied when shrinking. A colour image is resized one channel at a time, so
    channels never mix. For orders 0 and 1 that gives exactly scikit-image's numbers
    for the whole array in about half the time; for higher orders it also removes
    scikit-image's spline leak across the channel axis (up to 7e-4).
    """
    check_2d(image)
    array = to_float(image)
    rows, cols = (int(v) for v in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"Target shape must be positive, got {shape}.")
    if array.shape[:2] == (rows, cols):
        return array.copy()
    array = _block_reduce(array, min(array.shape[0] // rows, array.shape[1] // cols) // 4)
    if array.ndim == 2:
        return _resize_plane(array, (rows, cols), order)
    out = np.empty((rows, cols) + array.shape[2:])
    for channel in range(array.shape[2]):
        out[..., channel] = _resize_plane(array[..., channel], (rows, cols), order)
    return out


def _resize_plane(plane: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """scikit-image's resize of one 2-D plane, anti-aliased when shrinking (its
    smoothing of an axis that is not shrunk is a copy, so it is skipped when none is)."""
    from skimage.transform import resize as sk_resize

    shrinks = shape[0] < plane.shape[0] or shape[1] < plane.shape[1]
    return sk_resize(plane, shape, order=order, anti_aliasing=shrinks, preserve_range=True)


def _block_reduce(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean of `factor` x `factor` blocks (edges padded by repeating them); as is if factor < 2.

    Why: shrinking a 4096² field to a model's 64² input with one anti-aliasing Gaussian
    took 11 s; averaging blocks first (leaving at least a 4x shrink for the Gaussian)
    gives nearly the same image in a fraction of the time.
    """
    if factor < 2:
        return array
    from skimage.measure import block_reduce

    extra = [(0, -n % factor) for n in array.shape[:2]] + [(0, 0)] * (array.ndim - 2)
    block = (factor, factor) + (1,) * (array.ndim - 2)
    return block_reduce(np.pad(array, extra, mode="edge"), block, np.mean)


def document000_pipeline(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Document 000's preprocessing: resize, gray, /255, unsharp mask, channel axis.

    Returns float32 of shape (size, size, 1). Gray values are rounded to 8 bits as
    OpenCV does for uint8 input.
    """
    check_2d(image)
    if min(np.shape(image)[:2]) < 1:
        raise ImageError("The image is empty.")
    resized = resize(image, (size, size))
    gray = np.round(grayscale(resized) * 255.0) / 255.0
    return unsharp_mask(gray)[..., None].astype(np.float32)
