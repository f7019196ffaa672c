"""Turn whatever image a user hands us into the float arrays the core works on.

Every public function of the core calls one of these first, so that RGBA, 16-bit,
float, grayscale and stacked inputs are handled in one place with one set of messages.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


class ImageError(ValueError):
    """An image the core cannot use; the message says what to do instead."""


class ImageWarning(UserWarning):
    """An assumption made about an image (e.g. its value range); the message says which."""


#: Largest value of the 8- and 16-bit conventions, used to guess integer value ranges.
_BIT_DEPTHS = ((255, "8-bit", np.uint8), (65535, "16-bit", np.uint16))


def as_array(image) -> np.ndarray:
    """`image` (array or nested list) as a numpy array, or `ImageError` saying why not."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        raise ImageError(
            f"Got a file path ({image!s}), not an image; read it first with "
            "napari_leukemia.images.read_image(path)."
        )
    try:
        array = np.asarray(image)
    except ValueError as error:
        raise ImageError(f"The image is not a rectangular array of numbers: {error}") from error
    if array.dtype == object or array.dtype.kind in "USV":
        raise ImageError(
            f"The image holds {array.dtype} values, not numbers; pass a numeric array "
            "or a list of lists of numbers."
        )
    return array


def value_range(image) -> tuple[float, float, str | None]:
    """(value shown as 0, value shown as 1) for `image`, and a note when it was guessed.

    Integers follow their values, not only their dtype, so that 0-255 data stored as
    int64 or uint16 (e.g. a Python list) is not squashed to black: maximum <= 255 is
    8-bit, <= 65535 16-bit, otherwise the image's own maximum; negative values give the
    image's own min-max. Floats within [0, 1] are kept, non-negative ones up to 255 are
    taken as 8-bit, others min-max. The note is None when the dtype's own convention
    (uint8 0-255, uint16 0-65535, float 0-1, bool 0/1) applied.
    """
    array = as_array(image)
    if array.size == 0:
        raise ImageError("The image is empty (it has a zero-length axis).")
    if array.dtype == bool:
        return 0.0, 1.0, None
    if np.issubdtype(array.dtype, np.integer):
        return _integer_range(array)
    if np.issubdtype(array.dtype, np.floating):
        return _float_range(array)
    raise ImageError(f"Images of dtype {array.dtype} are not supported; use integers or floats.")


def _integer_range(array: np.ndarray) -> tuple[float, float, str | None]:
    low, high = int(array.min()), int(array.max())
    if low < 0:
        return (
            float(low),
            float(max(high, low + 1)),
            (
                f"The {array.dtype} image has negative values; its own range "
                f"[{low}, {high}] was stretched to [0, 1]."
            ),
        )
    for top, name, dtype in _BIT_DEPTHS:
        if high <= top:
            note = (
                None
                if array.dtype == dtype
                else (
                    f"The {array.dtype} image has values in [0, {high}]; taken as {name} "
                    f"(0-{top}). Convert it yourself (e.g. image / image.max()) if that is wrong."
                )
            )
            return 0.0, float(top), note
    return (
        0.0,
        float(high),
        (
            f"The {array.dtype} image has values up to {high}, beyond 16 bits; divided by its "
            "own maximum."
        ),
    )


def _float_range(array: np.ndarray) -> tuple[float, float, str | None]:
    if not np.all(np.isfinite(array)):
        raise ImageError(
            "The image contains NaN or infinite values; replace them "
            "(e.g. numpy.nan_to_num) before processing."
        )
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return 0.0, 1.0, None
    if low >= 0.0 and high <= 255.0:  # 8-bit values stored as float: keep colours
        return 0.0, 255.0, f"The float image has values in [0, {high:g}]; taken as 8-bit (0-255)."
    note = f"The float image has values in [{low:g}, {high:g}]; min-max scaled to [0, 1]."
    return low, (high if high > low else low + 1.0), note


def scale_to_unit(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """`(array - low) / (high - low)` as float64 (the conversion `value_range` describes)."""
    out = np.asarray(array, dtype=np.float64)
    if low == 0.0 and high == 1.0:
        return out.copy() if out is array else out
    return (out - low) / (high - low)


def to_float(image: np.ndarray) -> np.ndarray:
    """Return `image` as float64 in [0, 1] without changing its shape.

    The value range comes from `value_range` (dtype and values); an `ImageWarning`
    says what was assumed when it is not the dtype's own convention. Lists are accepted.
    A constant float image outside [0, 1] becomes zeros.
    """
    array = as_array(image)
    low, high, note = value_range(array)
    if note:
        warnings.warn(note, ImageWarning, stacklevel=2)
    return scale_to_unit(array, low, high)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return a 2-D image as float RGB of shape (rows, cols, 3) in [0, 1].

    Accepts grayscale (rows, cols), RGB and RGBA (rows, cols, 3|4). RGBA is composited
    over white, the colour of an empty slide. Anything with more dimensions is refused
    with a message: pass one plane (e.g. ``stack[i]``).
    """
    array = as_array(image)
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
    shape = np.shape(as_array(image))
    if len(shape) == 2:
        return
    if len(shape) == 3 and shape[-1] in (3, 4):
        return
    if len(shape) == 3 and shape[-1] == 2:
        raise ImageError(
            f"The image has shape {shape}: gray plus alpha (e.g. an 'LA' PNG). Read the "
            "file with napari_leukemia.images.read_image (it converts to RGBA), or pass "
            "image[..., 0] for the gray plane."
        )
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


def read_image(path) -> np.ndarray:
    """Read an image file as uint8/uint16 gray, RGB or RGBA, whatever its mode.

    Pillow modes numpy cannot show as colour are converted: CMYK, YCbCr, LAB and palette
    images become RGB (RGBA when they carry transparency), gray + alpha becomes RGBA,
    1-bit becomes 8-bit gray, 16-bit gray stays uint16. Errors name the file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_array(img)
    except FileNotFoundError as error:
        raise ImageError(f"No image file at {path}.") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(
            f"{path.name} could not be read as an image ({error}); the file may be "
            "truncated or not an image. Re-export or re-download it."
        ) from error


def _pil_to_array(img) -> np.ndarray:
    """A loaded Pillow image as a numpy array in a mode the core understands."""
    mode = img.mode
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(img)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if mode in ("I", "F"):
        array = np.asarray(img)
        if mode == "I" and array.min() >= 0 and array.max() <= 65535:
            return array.astype(np.uint16)
        return array
    if mode == "1":
        return np.asarray(img.convert("L"))
    alpha = mode in ("LA", "La", "PA", "RGBa") or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if alpha else "RGB"))


#: Largest image, in pixels, that `classify` takes in one piece (25 megapixels, e.g.
#: 5000 x 5000). Cost grows with the area: about 0.5 s and 80 MB per megapixel measured
#: on a 2-core CPU (4096 x 4096: 8 s, 2.0 GB; 8192 x 8192: 36 s, 5.7 GB peak memory).
#: Larger images go cell by cell (or tile by tile).
MAX_PIXELS = 25_000_000


def image_size(image) -> tuple[int, int] | None:
    """(rows, cols) of one 2-D image, an array or a file path (read from the header only).

    None when `image` is not a single image (a stack, an unreadable file): the caller's
    own checks then say what is wrong.
    """
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        from PIL import Image

        try:
            with Image.open(image) as img:  # lazy: the pixels are not decoded
                return img.size[1], img.size[0]
        except Exception:  # noqa: BLE001 - read_image gives the message for a bad file
            return None
    shape = getattr(image, "shape", None)  # numpy, dask, zarr: no data is read
    if shape is None:
        return None  # nested lists are small by nature; np.shape would copy a big one
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 2, 3, 4)):
        return int(shape[0]), int(shape[1])
    return None


def check_image_size(image, max_pixels: int | None = MAX_PIXELS, what: str = "classify"):
    """Refuse an image above `max_pixels` pixels with a message naming the way out.

    Processing a whole image at once costs time and memory in proportion to its area
    (10000 x 10000 took 106 s and 8.8 GB), so the core says when an image should go
    through the per-cell batch path instead. ``max_pixels=None`` switches the check off.
    """
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise ImageError(f"max_pixels must be a whole number or None, got {max_pixels!r}.")
    size = image_size(image)
    if size is None or size[0] * size[1] <= max_pixels:
        return
    rows, cols = size
    raise ImageError(
        f"The image is {rows} x {cols} = {rows * cols:,} pixels, more than {what} takes "
        f"in one piece ({max_pixels:,} pixels; time and memory grow with the "
        "area, about 0.5 s and 80 MB per megapixel). Analyse it cell by cell instead: "
        "`napari-leukemia batch IMAGE --out results.zarr`, or in Python detect the cells "
        f"(tile by tile for very large images) and pass them: {what}(image, model, "
        f"bbox=cells). To {what} it whole anyway, pass max_pixels=None (or a larger limit)."
    )


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
