"""How unlike the training cells an input is: a Mahalanobis score on the model's
intermediate features (Lee et al. 2018).

The features are the channel means of the model's last three ReLU layers (for the
default CNN: 64 + 96 + 128 values), or the inputs of its ``logits`` layer when it has no
separate ReLU layers. Earlier layers see colour and texture, the last one the class:
on all4 ROIs that hold no white cell the three layers together flag 76 % against 59 %
for the last layer alone, at the same 1 % of test cells (docs/model.md).

Fitted on the training split's cells: one mean per class and one shared covariance
(Ledoit–Wolf shrinkage, scikit-learn), so the score of an input is its squared
Mahalanobis distance to the nearest class mean. The threshold is the 99th percentile
of the validation cells' scores: about 1 in 100 cells like the training ones is
flagged, and an input above it "is unlike the cells the model was trained on".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np

#: Share of validation cells below the threshold.
QUANTILE = 0.99
#: The layer whose inputs are the features when the model has no ReLU layers.
LOGITS_LAYER = "logits"
#: How many of the last ReLU layers give features.
N_LAYERS = 3


@dataclass
class OodModel:
    """The fitted score: feature layers, class means (C, D), shared precision (D, D),
    threshold. Numbers are float32, as stored, so a model read back flags the same."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float = float("inf")
    layers: list[str] = field(default_factory=list)
    method: str = "mahalanobis (shared covariance, Ledoit-Wolf) on ReLU channel means"

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each feature row to its nearest class mean."""
        features = np.asarray(features, np.float64)
        means, precision = self.means.astype(np.float64), self.precision.astype(np.float64)
        diffs = features[:, None, :] - means[None, :, :]
        return ((diffs @ precision) * diffs).sum(axis=-1).min(axis=1)  # (f-m)ᵀ P (f-m)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "layers": list(self.layers),
            "threshold": self.threshold,
            "means": _encode(self.means),
            "precision": _encode(self.precision),
        }

    @classmethod
    def from_dict(cls, data: dict) -> OodModel:
        return cls(
            means=_decode(data["means"]),
            precision=_decode(data["precision"]),
            threshold=float(data["threshold"]),
            layers=list(data.get("layers", [])),
            method=str(data.get("method", cls.method)),
        )


def _encode(array: np.ndarray) -> dict:
    """A float32 array as JSON: shape and little-endian bytes in base64 (compact, exact)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(data.shape), "float32_base64": base64.b64encode(data).decode()}


def _decode(value) -> np.ndarray:
    if isinstance(value, dict):
        raw = base64.b64decode(value["float32_base64"])
        return np.frombuffer(raw, dtype="<f4").reshape(value["shape"]).copy()
    return np.asarray(value, np.float32)


def fit(train_features, train_labels, val_features, layers=()) -> OodModel:
    """Fit means and shrunk shared covariance on training cells; threshold on validation.

    The threshold is computed with the stored (float32) numbers, so a model read back
    from JSON flags exactly the validation cells this fit flagged.
    """
    from sklearn.covariance import LedoitWolf

    features = np.asarray(train_features, np.float64)
    labels = np.asarray(train_labels)
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    ood = OodModel(means.astype(np.float32), precision.astype(np.float32), layers=list(layers))
    ood.threshold = float(np.quantile(ood.scores(val_features), QUANTILE))
    return ood


def feature_layers(keras_model) -> list[str]:
    """The last `N_LAYERS` ReLU layers' names, or [] (then the logits' inputs are used)."""
    keras = _keras()
    names = [
        layer.name
        for layer in keras_model.layers
        if isinstance(layer, keras.layers.ReLU)
        or (
            isinstance(layer, keras.layers.Activation)
            and layer.get_config().get("activation") == "relu"
        )
    ]
    return names[-N_LAYERS:]


def features_and_logits(keras_model, batch: np.ndarray, layers=None):
    """(features, logits) of a prepared batch in one compiled pass; `layers` as
    `feature_layers` gives them (None: those of `keras_model`)."""
    from ..explain.analyzers import cached

    layers = tuple(feature_layers(keras_model) if layers is None else layers)
    function = cached(
        keras_model, ("features_and_logits", layers), lambda: _compiled(keras_model, layers)
    )
    batch = np.asarray(batch, np.float32)
    if len(batch) == 0:
        return np.zeros((0, 0), np.float32), np.zeros((0, keras_model.output_shape[-1]))
    parts = [function(batch[i : i + 256]) for i in range(0, len(batch), 256)]
    features = np.concatenate([f.numpy() for f, _ in parts])
    logits = np.concatenate([z.numpy() for _, z in parts])
    return features, logits


def has_logits_layer(keras_model) -> bool:
    try:
        keras_model.get_layer(LOGITS_LAYER)
    except ValueError:
        return False
    return True


def _keras():
    from .backend import keras_module

    return keras_module()


def _compiled(keras_model, layers: tuple):
    import tensorflow as tf

    logits = keras_model.get_layer(LOGITS_LAYER)
    taps = [keras_model.get_layer(name).output for name in layers] or [logits.input]
    head = _keras().Model(keras_model.inputs, [*taps, logits.output])
    spec = tf.TensorSpec((None, *keras_model.inputs[0].shape[1:]), tf.float32)

    def run(x):
        *outputs, scores = head(x, training=False)
        pooled = [tf.reduce_mean(o, axis=[1, 2]) if len(o.shape) == 4 else o for o in outputs]
        return tf.concat(pooled, axis=-1), scores

    from ..explain.graph import compile_function

    return compile_function(run, [spec])  # called without tf.function's dispatch
