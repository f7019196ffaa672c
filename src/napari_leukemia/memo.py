"""Model inputs of cells remembered by image content, so repeated explains skip preparing.

Why: the Explain widget explains one cell with several methods, one call each, and for a
model that reads the cell alone preparing its input costs more than the map itself: the
cell's detector mask (a whole detection of the field when only a box is known) and the
blanking and resizing around it. Entries are keyed by a digest of the image's bytes, so
an image changed in place is never served a stale input; warnings raised while preparing
(a box clipped at the image edge) are raised again on every reuse. A few entries only.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

#: Prepared inputs kept (one per image, box and model input spec).
ITEMS = 16
#: Detections kept (the cells of an image, and their full-image masks: two per image).
DETECTIONS = 4


def digest(array) -> tuple | None:
    """(shape, dtype, hash of the bytes) of a numpy array; None for anything else."""
    if not isinstance(array, np.ndarray):
        return None
    data = np.ascontiguousarray(array)
    return data.shape, data.dtype.str, hashlib.sha256(data.view(np.uint8)).digest()


class Memo:
    """A small least-recently-used store of values built on first use."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, build: Callable):
        """The value under `key` (None: not kept), built by `build()` when missing.

        Returns (value, warnings raised while building it), the warnings raised again.
        """
        if key is None:
            return build(), []
        with self._lock:
            found = self._values.get(key)
            if found is not None:
                self._values.move_to_end(key)
        if found is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = build()
            found = (value, [(w.message, w.category) for w in caught])
            with self._lock:
                self._values[key] = found
                while len(self._values) > self.size:
                    self._values.popitem(last=False)
        for message, category in found[1]:
            warnings.warn(message, category, stacklevel=4)
        return found

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


PREPARED = Memo(ITEMS)
DETECTED = Memo(DETECTIONS)


def detections(image) -> list:
    """`detect_cells(image)`, remembered for the last few images (by content)."""
    from .cells import detect_cells

    key = digest(image)
    return DETECTED.get(None if key is None else ("cells", key), lambda: detect_cells(image))[0]


def detected_masks(image) -> list:
    """The full-image masks of `detections(image)`, remembered with them."""
    from .model.cell_context import full_mask

    key = digest(image)

    def build():
        return [full_mask(c, np.shape(image)) for c in detections(image)]

    return DETECTED.get(None if key is None else ("masks", key), build)[0]


def clear() -> None:
    """Forget every remembered input and detection."""
    PREPARED.clear()
    DETECTED.clear()
