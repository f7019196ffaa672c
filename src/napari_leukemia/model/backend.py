"""Load Keras (TensorFlow backend) only when a model is first needed."""

from __future__ import annotations

import os


def keras_module():
    """Import and return `keras`, quietly and on the TensorFlow backend."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras
