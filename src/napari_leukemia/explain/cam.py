"""Class activation maps from gradients: Grad-CAM and Grad-CAM++.

- Grad-CAM (Selvaraju et al. 2017): weights α_k = mean over space of ∂y/∂A_k, map
  ReLU(Σ_k α_k A_k).
- Grad-CAM++ (Chattopadhay et al. 2018): pixel-wise weights
  a_kij = g² / (2g² + Σ_ab A_kab · g³) on ReLU(g), w_k = Σ_ij a_kij ReLU(g_kij),
  map ReLU(Σ_k w_k A_k) (the closed form for an exponential of the score).

y is the target's pre-softmax logit and g = ∂y/∂A. Maps are bilinearly upsampled to the
model input (half-pixel centres).

The default feature map is the last convolutional layer's output, followed forward
through the ops that keep its spatial size (batch norm, activation, residual add,
concatenation), e.g. ``relu5`` in the plugin's CNN, ``conv5_block3_out`` in ResNet50,
``mixed10`` in InceptionV3. Convolutions after global pooling (MobileNet's classifier)
are not candidates.
"""

from __future__ import annotations

from ..model.backend import tensorflow_module
from .graph import (
    TARGETS_SPEC,
    Graph,
    compile_function,
    input_signature,
    resolve_target,
    target_score,
)
from .methods import ExplainError

tf = tensorflow_module()


def _spatial(shape) -> tuple | None:
    if shape is None or len(shape) < 3:
        return None
    return tuple(shape[1:-1])


def default_layer(graph: Graph) -> int:
    """Key of the default Grad-CAM feature map (see module docstring)."""
    collapsed = set()
    last = None
    for op in graph.ops:
        if op.collapses or any(k in collapsed for k in op.inputs):
            collapsed.add(op.output)
            continue
        if op.spatial and _spatial(graph.shapes.get(op.output)) is not None:
            last = op
    if last is None:
        raise ExplainError(
            f"The model {graph.name!r} has no convolutional layer; Grad-CAM needs one "
            "(or pass layer=... naming a layer with a spatial feature map)."
        )
    chain = {last.output}
    chosen = last.output
    size = _spatial(graph.shapes.get(last.output))
    position = graph.ops.index(last)
    for op in graph.ops[position + 1 :]:
        if op.output in collapsed or not any(k in chain for k in op.inputs):
            continue
        if _spatial(graph.shapes.get(op.output)) == size:
            chain.add(op.output)
            chosen = op.output
    return chosen


def named_layer(graph: Graph, name: str) -> int:
    op = graph.find(name)
    if op is None:
        candidates = sorted({o.name.split("/")[0] for o in graph.ops if o.spatial})
        raise ExplainError(
            f"No layer named {name!r} in the model; convolutional layers are: "
            f"{', '.join(candidates) or 'none'}."
        )
    if _spatial(graph.shapes.get(op.output)) is None:
        raise ExplainError(
            f"Layer {name!r} outputs shape {graph.shapes.get(op.output)}, not a spatial "
            "feature map (batch, rows, cols, channels); choose a convolutional layer."
        )
    return op.output


def layer_name(graph: Graph, key: int) -> str:
    op = graph.producer(key)
    return op.name.split("/")[0] if op is not None else "input"


class CAMEngine:
    """Compiled Grad-CAM / Grad-CAM++ for one model graph and feature-map tensor.

    Call with x (N, rows, cols, C) and target (N,) (-1: predicted class); returns
    (map upsampled to (N, rows, cols, 1), logits, target, map at feature resolution).
    """

    def __init__(self, graph: Graph, key: int, plus_plus: bool):
        self.graph, self.key, self.plus_plus = graph, key, plus_plus
        self._fn = compile_function(self._cam, [input_signature(graph), TARGETS_SPEC])

    def __call__(self, x, target):
        return self._fn(x, target)

    def _cam(self, x, target):
        with tf.GradientTape() as tape:
            values = self.graph.run(x, watch=(self.key, tape))
            logits = values[self.graph.output]
            target = resolve_target(logits, target)
            score = target_score(logits, target)
        activations = values[self.key]
        grads = tape.gradient(score, activations)
        axes = list(range(1, activations.shape.rank - 1))
        if self.plus_plus:
            weights = grad_cam_pp_weights(activations, grads, axes)
        else:
            weights = tf.reduce_mean(grads, axis=axes, keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1, keepdims=True))
        size = tf.shape(x)[1:3]
        return tf.image.resize(cam, size, method="bilinear"), logits, target, cam


def grad_cam_pp_weights(activations, grads, axes):
    """Σ_ij a_kij ReLU(g_kij) with a = g² / (2g² + Σ_ab A_kab g³) (0 where g = 0)."""
    g2 = tf.square(grads)
    g3 = g2 * grads
    total = tf.reduce_sum(activations, axis=axes, keepdims=True)
    denominator = 2.0 * g2 + total * g3
    safe = tf.where(tf.abs(denominator) > 0, denominator, tf.ones_like(denominator))
    alpha = tf.where(grads != 0, g2 / safe, tf.zeros_like(g2))
    return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=axes, keepdims=True)
