"""One rule for the call: the class is taken on the malignant-vs-benign side of P(malignant)."""

import numpy as np
import pytest

from napari_leukemia.model.metadata import CLASS_NAMES, called_class

BENIGN = ["Benign"]


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ([0.48, 0.30, 0.22, 0.00], "Early Pre-B"),  # Benign most probable, but P(mal) 0.52
        ([0.60, 0.30, 0.10, 0.00], "Benign"),
        ([0.10, 0.20, 0.30, 0.40], "Pro-B"),
        ([0.50, 0.25, 0.25, 0.00], "Early Pre-B"),  # P(mal) exactly 0.5 is malignant
    ],
)
def test_called_class_follows_the_malignant_side(probabilities, expected):
    assert called_class(probabilities, CLASS_NAMES, BENIGN) == expected


def test_without_a_benign_class_the_most_probable_class_is_called():
    assert called_class([0.2, 0.5, 0.3], ["a", "b", "c"], BENIGN) == "b"
    assert called_class([0.2, 0.5, 0.3], ["a", "b", "c"], []) == "b"


def test_classify_gives_a_coherent_call_from_a_real_model():
    """A Keras model whose output is fixed by its bias: Benign 0.48 is the top class,
    yet P(malignant) is 0.52, so the call is the top malignant class."""
    import keras

    from napari_leukemia.model.classify import LoadedModel, classify
    from napari_leukemia.model.metadata import InputSpec, ModelInfo

    target = np.array([0.48, 0.30, 0.22, 1e-6])
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(
        4,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(np.log(target)),
    )(pooled)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    loaded = LoadedModel(model, ModelInfo(input=InputSpec(kind="field", size=(16, 16))))
    result = classify(np.full((40, 40, 3), 200, np.uint8), loaded)
    assert max(result.probabilities, key=result.probabilities.get) == "Benign"
    assert result.malignant is True
    assert result.class_name == "Early Pre-B"
    assert result.as_dict()["class"] == "Early Pre-B" and result.as_dict()["malignant"]
