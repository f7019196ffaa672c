"""napari-leukemia: preprocess, classify and explain ALL blood-smear images.

Everything listed in ``__all__`` is importable from the package, but each name is
loaded on first use, so ``import napari_leukemia`` stays fast and never imports
TensorFlow, Keras or Qt.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        value = _callable_submodule(module) if _EXPORTS[name] == name else None
        value = getattr(module, name) if value is None else value
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _CallableModule(types.ModuleType):
    """A submodule that can be called as its like-named function (``nl.quantify(...)``)."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def _callable_submodule(module: types.ModuleType) -> types.ModuleType | None:
    """Make `module` callable as its like-named function; None if it has no such function.

    Why: importing ``napari_leukemia.quantify`` binds the submodule to the package's
    ``quantify`` attribute, replacing the function; a callable module keeps both
    ``nl.quantify(...)`` and ``nl.quantify.quantify_many`` working in any import order.
    """
    function = getattr(module, module.__name__.rpartition(".")[2], None)
    if function is None:
        return None
    if not callable(module):
        module.__class__ = _CallableModule
        module.__signature__ = inspect.signature(function)
    return module


class _Package(types.ModuleType):
    """This package; submodules named like an exported function are bound callable."""

    def __setattr__(self, name, value):
        if (
            isinstance(value, types.ModuleType)
            and _EXPORTS.get(name) == name
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            value = _callable_submodule(value) or value
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
