"""Attribution maps for the plugin's classifiers: gradients, LRP, CAMs, occlusion.

``explain(image, method, model=None, target=None, **params)`` returns a float32 map with
the image's rows and columns (channels summed); `explain_full` returns an `Explanation`
with the target, logit, notes and ROI transform. Both take a batch of cells (``bbox`` a
list of boxes or detected cells, or ``image`` a stack of ROIs) and run it in one compiled
call. `METHODS` lists the method ids, their parameters (with checks and form fields),
whether their maps are signed, and the runner (`runners`) that computes them.
`attribute` works on batches that are already model inputs.

The LRP family is implemented here on ``tf.GradientTape`` (no maintained Keras 3 LRP
library exists): rules in `lrp.rules`, composites in `lrp.composites`, BatchNorm folding
in `lrp.canonize`, graph walking in `graph`, the compiled analyzer in `lrp.analyzer`.

Importing this package does not import TensorFlow; the first explanation does.

The package itself is callable and means `explain` (see `_callable_module`).
"""

from __future__ import annotations

import importlib

from .._callable_module import make_callable
from .methods import METHODS, ExplainError, MethodInfo, Param, method_info

_LAZY = {
    "explain": "api",
    "explain_full": "api",
    "Explanation": "api",
    "EmptyMapWarning": "api",
    "map_to_image": "api",
    "attribute": "analyzers",
    "clear_cache": "analyzers",
    "UnsupportedLayerError": "graph",
}

__all__ = [
    "METHODS",
    "EmptyMapWarning",
    "ExplainError",
    "Explanation",
    "MethodInfo",
    "Param",
    "UnsupportedLayerError",
    "attribute",
    "clear_cache",
    "explain",
    "explain_full",
    "map_to_image",
    "method_info",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


make_callable(__name__)
