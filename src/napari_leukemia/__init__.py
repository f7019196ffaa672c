"""napari-leukemia: preprocess, classify and explain ALL blood-smear images.

Everything listed in ``__all__`` is importable from the package, but each name is
loaded on first use, so ``import napari_leukemia`` stays fast and never imports
TensorFlow, Keras or Qt.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ImageError": "images",
    "grayscale": "preprocess",
    "normalize": "preprocess",
    "gaussian_blur": "preprocess",
    "unsharp_mask": "preprocess",
    "resize": "preprocess",
    "document000_pipeline": "preprocess",
    "Cell": "cells",
    "detect_cells": "cells",
    "cells_to_labels": "cells",
    "RoiTransform": "roi",
    "extract_roi": "roi",
    "MORPHOLOGY_CLASSES": "labels",
    "MORPHOLOGY_COLORS": "labels",
    "make_smear": "synthetic",
    "load_model": "model.classify",
    "classify": "model.classify",
    "Classification": "model.classify",
    "ModelError": "model.classify",
    "explain": "explain",
    "explain_full": "explain",
    "Explanation": "explain",
    "METHODS": "explain",
    "quantify": "quantify",
    "quantify_many": "quantify",
    "summarize": "quantify",
    "suggest_labels": "labels",
    "save_labels": "labels",
    "load_labels": "labels",
    "label_names": "labels",
    "context_check": "sanity.context",
    "randomization_check": "sanity.randomization",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        # a submodule named like its function is that function, callable (as Python
        # itself binds it on import): see _callable_module
        value = module if _EXPORTS[name] == name else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
