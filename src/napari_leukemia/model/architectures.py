"""Model architectures offered by ``napari-leukemia train --arch``.

Every architecture ends in a linear ``logits`` Dense layer followed by a separate
``probabilities`` softmax, so explanations can use the pre-softmax scores. Only
Conv2D / BatchNormalization / ReLU / pooling / Dense / Dropout / Flatten layers are
used, which the attribution engine can explain.
"""

from __future__ import annotations

from dataclasses import replace

from .backend import keras_module
from .metadata import InputSpec

#: Architecture name → (input spec it is trained with, one-line description).
ARCHITECTURES = {
    "default": (
        InputSpec(kind="cell", size=(64, 64), pipeline="rgb"),
        "small RGB CNN (5 conv+BN blocks, global average pooling) on 64x64 cell ROIs",
    ),
    "default-cell": (
        InputSpec(kind="cell", size=(64, 64), pipeline="rgb", context="cell"),
        "the default CNN on 64x64 cell ROIs that show only the cell (the rest blanked)",
    ),
    "default-field": (
        InputSpec(kind="field", size=(128, 128), pipeline="rgb"),
        "the default CNN on whole fields resized to 128x128 (for comparison)",
    ),
    "seed000": (
        InputSpec(kind="field", size=(224, 224), pipeline="document000"),
        "document 000: 5 conv/max-pool blocks, Dense128 (L2 0.01), dropout 0.5; gray 224",
    ),
    "seed004": (
        InputSpec(kind="field", size=(100, 100), pipeline="rgb"),
        "document 004: Conv32-MP-Conv32-MP-Dense64 on RGB 100x100 (4-way softmax here)",
    ),
}


def input_spec(arch: str) -> InputSpec:
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}.")
    return replace(ARCHITECTURES[arch][0])


def build(arch: str, n_classes: int = 4, input_shape=None):
    """Return an uncompiled Keras model for `arch`."""
    keras = keras_module()
    layers = keras.layers
    shape = tuple(input_shape or input_spec(arch).shape)
    inputs = keras.Input(shape=shape, name="image")
    if arch in ("default", "default-cell", "default-field"):
        x = inputs
        for i, filters in enumerate((16, 32, 64, 96, 128)):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
            x = layers.ReLU(name=f"relu{i + 1}")(x)
            if i < 4:
                x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = layers.Dropout(0.3, name="dropout")(x)
    elif arch == "seed000":
        x = inputs
        for i, filters in enumerate((32, 64, 64, 128, 128)):
            x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{i + 1}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
        x = layers.Flatten(name="flatten")(x)
        regularizer = keras.regularizers.l2(0.01)
        x = layers.Dense(128, activation="relu", kernel_regularizer=regularizer, name="dense")(x)
        x = layers.Dropout(0.5, name="dropout")(x)
    elif arch == "seed004":
        x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
        x = layers.MaxPooling2D(2, name="pool1")(x)
        x = layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
        x = layers.MaxPooling2D(2, name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(64, activation="relu", name="dense")(x)
    else:
        input_spec(arch)  # raises the helpful error
    logits = layers.Dense(n_classes, name="logits")(x)
    outputs = layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=arch.replace("-", "_"))


def learning_rate(arch: str) -> float:
    """Adam learning rate: document 000 used 1e-4; BatchNorm nets train well at 1e-3."""
    return 1e-4 if arch == "seed000" else 1e-3
