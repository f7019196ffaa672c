"""How unlike the training cells an input is: a Mahalanobis score on the model's
penultimate features (Lee et al. 2018).

The features are the inputs of the model's ``logits`` layer (after global pooling).
Fitted on the training split's cells: one mean per class and one shared covariance
(Ledoit–Wolf shrinkage, scikit-learn), so the score of an input is its squared
Mahalanobis distance to the nearest class mean. The threshold is the 99th percentile
of the validation cells' scores: about 1 in 100 cells like the training ones is
flagged, and an input above it "is unlike the cells the model was trained on".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Share of validation cells below the threshold.
QUANTILE = 0.99
#: The layer whose inputs are the features.
LOGITS_LAYER = "logits"


@dataclass
class OodModel:
    """The fitted score: class means (C, D), shared precision (D, D), threshold."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float = float("inf")
    method: str = "mahalanobis (shared covariance, Ledoit-Wolf) on the logits layer's inputs"

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each feature row to its nearest class mean."""
        features = np.asarray(features, np.float64)
        diffs = features[:, None, :] - self.means[None, :, :]
        distances = np.einsum("ncd,de,nce->nc", diffs, self.precision, diffs)
        return distances.min(axis=1)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["means"] = _rounded(self.means)
        out["precision"] = _rounded(self.precision)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> OodModel:
        return cls(
            means=np.asarray(data["means"], np.float64),
            precision=np.asarray(data["precision"], np.float64),
            threshold=float(data["threshold"]),
            method=str(data.get("method", cls.method)),
        )


def _rounded(array: np.ndarray) -> list:
    """7 significant digits: what JSON keeps of the fitted numbers."""
    return np.vectorize(lambda v: float(f"{v:.7g}"))(np.asarray(array, np.float64)).tolist()


def fit(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray):
    """Fit means and shrunk shared covariance on training cells; threshold on validation.

    The stored (rounded) numbers are the ones the threshold is computed with, so a model
    read back from JSON flags exactly the validation cells this fit flagged.
    """
    from sklearn.covariance import LedoitWolf

    features = np.asarray(train_features, np.float64)
    labels = np.asarray(train_labels)
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    ood = OodModel.from_dict(
        {"means": _rounded(means), "precision": _rounded(precision), "threshold": np.inf}
    )
    ood.threshold = float(np.quantile(ood.scores(val_features), QUANTILE))
    return ood


def features_and_logits(keras_model, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features, logits) of a prepared batch, in one compiled pass."""
    from ..explain.analyzers import cached

    function = cached(keras_model, "features_and_logits", lambda: _compiled(keras_model))
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


def _compiled(keras_model):
    import tensorflow as tf

    from .backend import keras_module

    layer = keras_model.get_layer(LOGITS_LAYER)
    head = keras_module().Model(keras_model.inputs, [layer.input, layer.output])
    spec = tf.TensorSpec((None, *keras_model.inputs[0].shape[1:]), tf.float32)
    return tf.function(lambda x: head(x, training=False), input_signature=[spec])
