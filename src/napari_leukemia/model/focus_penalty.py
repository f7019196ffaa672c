"""Train a cell-only model to put its input gradients on the cell ("right for the right
reasons", Ross et al. 2017).

The loss gets a term `weight` × (share of the squared input gradient of Σ log p(class)
that falls outside the cell). Ross et al. penalise the squared gradient outside the
annotated region itself; the share is the same idea made scale-free, so one weight
works whatever the gradients' size. It is estimated on the first `PENALTY_SAMPLES`
images of each batch (a double backward pass costs about three forward ones), which
keeps a penalised epoch under twice a plain one. On a cell-only input the outside is the blanked
surroundings, read off each image (`augment.outside_cell`).

`focus_trainer` wraps the model only while it trains: its weights *are* the model's,
and the model saved afterwards is the plain one. Validation loss stays the plain
cross-entropy (what early stopping and the kept weights go by); ``outside_share`` is
logged for training and validation.
"""

from __future__ import annotations

from .augment import outside_cell
from .backend import keras_module

#: Images per batch on which the penalty is computed.
PENALTY_SAMPLES = 16


def focus_trainer(model, weight: float):
    """A Keras model that trains `model` on ((images, outside), labels) with the penalty;
    validation data may be plain (images, labels)."""
    import tensorflow as tf

    keras = keras_module()

    class FocusTrainer(keras.Model):
        def __init__(self):
            super().__init__(name="focus_trainer")
            self.inner = model
            self.share_tracker = keras.metrics.Mean(name="outside_share")

        def call(self, inputs, training=False):
            return self.inner(_images(inputs), training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
            images = _images(x)[:PENALTY_SAMPLES]
            outside = (
                x[1][:PENALTY_SAMPLES] if isinstance(x, tuple | list) else outside_cell(images)
            )
            share = tf.reduce_mean(self._outside_share(images, outside, training))
            self.share_tracker.update_state(share)
            return loss + weight * share if training else loss

        def _outside_share(self, images, outside, training):
            with tf.GradientTape() as tape:
                tape.watch(images)
                probabilities = self.inner(images, training=training)
                log_p = tf.reduce_sum(tf.math.log(tf.maximum(probabilities, 1e-7)), axis=-1)
            energy = tf.square(tape.gradient(log_p, images))
            total = tf.reduce_sum(energy, axis=[1, 2, 3]) + 1e-12
            return tf.reduce_sum(energy * outside, axis=[1, 2, 3]) / total

    return FocusTrainer()


def _images(inputs):
    return inputs[0] if isinstance(inputs, tuple | list) else inputs
