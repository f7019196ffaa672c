"""Load Keras (TensorFlow backend) only when a model is first needed."""

from __future__ import annotations

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow with its libraries bound to their own symbols (``RTLD_DEEPBIND``).

    TensorFlow's native library carries its own LLVM. In a napari session Mesa's OpenGL
    driver has already loaded a different libLLVM whose symbols would win, and
    TensorFlow's LLVM static initialisers then crash the process (segfault in
    ``_GLOBAL__sub_I_DebugInfoMetadata.cpp``, seen with Mesa under Xvfb). A no-op once
    TensorFlow is imported, or where the flag does not exist.
    """
    if "tensorflow" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import tensorflow  # noqa: F401
    finally:
        sys.setdlopenflags(flags)


def keras_module():
    """Import and return `keras`, quietly and on the TensorFlow backend."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import_tensorflow()
    import keras

    return keras
