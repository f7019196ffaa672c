"""Turn whatever image a user hands us into the float arrays the core works on.

Every public function of the core calls one of these first, so that RGBA, 16-bit,
float, grayscale and stacked inputs are handled in one place with one set of messages.
"""

from __future__ import annotations

import numpy as np


class ImageError(ValueError):
    """An image the core cannot use; the message says what to do instead."""


def to_float(image: np.ndarray) -> np.ndarray:
    """Return `image` as float64 in [0, 1] without changing its shape.

    Integer images are divided by their dtype's maximum (uint8 by 255, uint16 by
    65535); a float image already within [0, 1] is kept as is, a non-negative one
    with values in [0, 255] is taken as 8-bit and divided by 255 (colour ratios kept),
    any other float image is min–max scaled. Booleans become 0/1.
    """
    array = np.asarray(image)
    if array.size == 0:
        raise ImageError("The image is empty (it has a zero-length axis).")
    if array.dtype == bool:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0:
            array = array.astype(np.float64) - info.min
            return array / (float(info.max) - info.min)
        return array.astype(np.float64) / info.max
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            raise ImageError(
                "The image contains NaN or infinite values; replace them "
                "(e.g. numpy.nan_to_num) before processing."
            )
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            return array
        if low >= 0.0 and high <= 255.0:  # 8-bit values stored as float: keep colours
            return array / 255.0
        if high == low:
            return np.zeros_like(array)
        return (array - low) / (high - low)
    raise ImageError(f"Images of dtype {array.dtype} are not supported; use integers or floats.")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return a 2-D image as float RGB of shape (rows, cols, 3) in [0, 1].

    Accepts grayscale (rows, cols), RGB and RGBA (rows, cols, 3|4). RGBA is composited
    over white, the colour of an empty slide. Anything with more dimensions is refused
    with a message: pass one plane (e.g. ``stack[i]``).
    """
    array = np.asarray(image)
    check_2d(array)
    rgb = to_float(array)
    if rgb.ndim == 2:
        return np.repeat(rgb[..., None], 3, axis=-1)
    if rgb.shape[-1] == 4:
        alpha = rgb[..., 3:4]
        return rgb[..., :3] * alpha + (1.0 - alpha)
    return rgb


def check_2d(image: np.ndarray) -> None:
    """Raise `ImageError` unless `image` is one 2-D plane (gray, RGB or RGBA)."""
    shape = np.shape(image)
    if len(shape) == 2:
        return
    if len(shape) == 3 and shape[-1] in (3, 4):
        return
    if len(shape) == 3 and shape[-1] in (1,):
        raise ImageError(
            f"The image has shape {shape}: a single channel in a trailing axis. "
            "Pass image[..., 0] instead."
        )
    if len(shape) >= 3:
        raise ImageError(
            f"The image has shape {shape}, which looks like a stack or time series; "
            "only single 2-D planes (gray, RGB or RGBA) are supported. "
            "Pass one plane, e.g. image[0]."
        )
    raise ImageError(f"The image has shape {shape}; a 2-D image is needed.")


def is_rgb(image: np.ndarray) -> bool:
    """True when the last axis holds 3 or 4 colour channels."""
    shape = np.shape(image)
    return len(shape) == 3 and shape[-1] in (3, 4)


def as_label_image(labels, error: type[ValueError] = ValueError, what: str = "The labels"):
    """`labels` as a non-negative integer array (bool → uint8), or `error` saying why not.

    The one check behind every function that takes a label image (quantification,
    label files), so they accept and refuse the same things with the same words.
    """
    array = np.asarray(labels)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        whole = (
            np.issubdtype(array.dtype, np.floating)
            and np.isfinite(array).all()
            and np.array_equal(array, np.round(array))
        )
        hint = (
            " Its values are whole numbers, so `labels.astype(np.int32)` will do."
            if whole
            else " Its values are not whole numbers, so it is probably not a label image."
        )
        raise error(
            f"{what} have dtype {array.dtype}; a label image holds integers (one class "
            f"value per pixel, 0 = not labelled).{hint}"
        )
    if array.size and np.issubdtype(array.dtype, np.signedinteger) and array.min() < 0:
        raise error(
            f"{what} hold negative values (minimum {int(array.min())}); label values "
            "must be >= 0 (0 = not labelled)."
        )
    return array
