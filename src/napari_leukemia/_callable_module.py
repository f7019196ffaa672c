"""Modules that can be called as their like-named function.

``napari_leukemia.explain`` and ``napari_leukemia.quantify`` are both a submodule and
the brief's function of that name. Python binds the package attribute to the submodule
once it is imported, so the call must work on the module itself, in any import order.
"""

from __future__ import annotations

import sys
import types


class CallableModule(types.ModuleType):
    """Calling the module calls its function of the same name."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Turn the (already imported) module `module_name` into a `CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule
