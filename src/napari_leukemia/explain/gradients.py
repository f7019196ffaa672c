"""Gradient-based and perturbation attributions, each compiled once per model.

- Gradient / |Gradient| / Gradient×Input (Simonyan et al. 2014; Shrikumar et al. 2016)
  share one compiled function returning ∂logit/∂input.
- Integrated Gradients (Sundararajan et al. 2017): the straight path from a baseline to
  the input in `steps` intervals, all points in one batch, trapezoid rule.
- SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies, noise drawn in the
  graph from a seed (reproducible), all copies in one batch.
- Occlusion (Zeiler & Fergus 2014): batched forward passes of occluded copies.

All explain the target's pre-softmax logit. Batches are split only when the activations
would need more than `MEMORY_BUDGET` bytes.

The gradient engines run on the canonized graph (BatchNormalization folded into the
convolution before it, `lrp.canonize`): the same function with fewer ops, so a batch of
33 path points costs about a third less than through the Keras layers.
"""

from __future__ import annotations

import numpy as np

from ..memo import Memo
from ..model.backend import tensorflow_module
from .graph import (
    LINEAR,
    TARGETS_SPEC,
    Graph,
    compile_function,
    input_signature,
    resolve_target,
    target_score,
)

tf = tensorflow_module()

#: Activation memory allowed for one batched forward+backward pass (bytes).
MEMORY_BUDGET = 256 * 2**20


def activation_bytes(graph: Graph, input_shape) -> int:
    """Bytes of all op outputs for one input image (static shapes; scaled if unknown)."""
    total = 0
    known = np.prod([d for d in graph.input_shape[1:] if d is not None] or [1])
    actual = np.prod(input_shape)
    for op in graph.ops:
        shape = graph.shapes.get(op.output)
        if shape is None:
            continue
        dims = [d for d in shape[1:]]
        size = np.prod([d for d in dims if d is not None] or [1])
        if any(d is None for d in dims):
            size = size * actual / max(known, 1)
        total += 4 * size
    return int(max(total, 4 * actual))


def auto_batch(graph: Graph, input_shape, requested=None) -> int:
    """Inputs per batch: `requested`, or as many as fit in `MEMORY_BUDGET` (x3 for grads)."""
    if requested is not None:
        return int(requested)
    key = tuple(int(v) for v in input_shape)
    sizes = graph.__dict__.setdefault("_batch_sizes", {})  # per graph and input shape
    if key not in sizes:
        per_image = 3 * activation_bytes(graph, key)
        sizes[key] = max(1, int(MEMORY_BUDGET // max(per_image, 1)))
    return sizes[key]


def output_activation(graph: Graph, logits):
    """The model's own output from its logits (the activation the graph stripped)."""
    if graph.output_activation == "softmax":
        return tf.nn.softmax(logits, axis=-1)
    if graph.output_activation == "sigmoid":
        return tf.sigmoid(logits)
    if graph.output_activation == "log_softmax":
        return tf.nn.log_softmax(logits, axis=-1)
    return logits


class ForwardEngine:
    """Logits and the model's output (e.g. softmax probabilities) of a batch.

    The one compiled inference path: `classify`, occlusion and target selection use it.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self._fn = compile_function(self._forward, [input_signature(graph)])

    def _forward(self, x):
        logits = self.graph.run(x)[self.graph.output]
        return logits, output_activation(self.graph, logits)

    def __call__(self, x):
        return self._fn(x)


def _logits(graph: Graph, x, folded: bool):
    return graph.run(x, linear_forward=folded)[graph.output]


def _column(values, like):
    """`values` (n,) shaped (n, 1, 1, ...) to broadcast over a batch shaped like `like`."""
    shape = tf.concat([tf.shape(values), tf.ones([tf.rank(like) - 1], tf.int32)], axis=0)
    return tf.reshape(values, shape)


def input_gradient(graph: Graph, x, target, folded: bool):
    """(∂logit[target]/∂x, logits, resolved target) of a batch, inside a compiled function
    (`folded`: run linear ops from their folded parameters)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = _logits(graph, x, folded)
        target = resolve_target(logits, target)
        score = target_score(logits, target)
    return tape.gradient(score, x), logits, target


class GradientEngine:
    """∂logit[target]/∂input for a batch; returns (gradient, logits, target).

    `folded`: `graph` is the BatchNorm-folded graph, run from its folded parameters.
    """

    def __init__(self, graph: Graph, folded: bool = False):
        self.graph, self.folded = graph, folded
        self._fn = compile_function(
            self._gradient,
            [input_signature(graph), TARGETS_SPEC],
        )

    def _gradient(self, x, target):
        return input_gradient(self.graph, x, target, self.folded)

    def __call__(self, x, target):
        return self._fn(x, target)


class InputLinear:
    """The graph's first op when it is affine in the input alone: ``z = A x + b`` (a
    convolution or dense layer, BatchNorm folded in).

    Path and noise methods push many copies of one input through the network. Split
    here, the copies are formed after the first op, ``A(x0 + α d) + b = z0 + α A d``,
    and the input gradient summed over the copies is one transposed application,
    ``Σ_k Aᵀ g_k = Aᵀ Σ_k g_k``: identities of a linear map that spare the first
    (full-resolution) layer's work on every copy but one.
    """

    def __init__(self, graph: Graph):
        self.graph, self.op = graph, graph.ops[0]

    @staticmethod
    def of(graph: Graph) -> InputLinear | None:
        """The split, or None when the first op is not a weighted linear op that alone
        reads the input (the engines then copy the input itself)."""
        first = graph.ops[0] if graph.ops else None
        if first is None or first.kind != LINEAR or first.linear is None:
            return None
        if first.linear.weightless or first.inputs != (graph.input,):
            return None
        return InputLinear(graph) if graph.consumers().get(graph.input) == 1 else None

    def linear(self, x):
        """``A x`` (no bias)."""
        kernel, _ = self.op.linear.params()
        return self.op.linear.apply([x], kernel)

    def affine(self, x):
        """``A x + b``: the first op's output."""
        return self.op.linear.forward([x])

    def logits(self, z):
        """The logits from the first op's output `z` (linear ops from their parameters)."""
        return self.graph.run_from({self.op.output: z}, 1, linear_forward=True)[self.graph.output]

    def transpose(self, x, g):
        """``Aᵀ g`` for the first op's output gradient `g` (`x`: any input of its shape)."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = self.linear(x)
        return tape.gradient(z, x, output_gradients=g)


class IntegratedGradientsEngine:
    """Weighted sum of gradients along ``baseline + α (x − baseline)``.

    Called per chunk of path points: (x (1,...), baseline (1,...), alphas (n,),
    weights (n,), target (1,)) → (Σ weights·gradients (1,...), logits (n, K), target).
    A target of -1 is resolved from the first path point, which is α = 1 (the input).
    """

    def __init__(self, graph: Graph, folded: bool = False):
        self.graph, self.folded = graph, folded
        self.split = InputLinear.of(graph) if folded else None
        spec = input_signature(graph)
        vector = tf.TensorSpec((None,), tf.float32)
        chunk = self._chunk if self.split is None else self._split_chunk
        self._fn = compile_function(chunk, [spec, spec, vector, vector, TARGETS_SPEC])

    def _chunk(self, x, baseline, alphas, weights, target):
        path = baseline + _column(alphas, x) * (x - baseline)
        with tf.GradientTape() as tape:
            tape.watch(path)
            logits = _logits(self.graph, path, self.folded)
            target = resolve_target(logits[:1], target)
            score = tf.gather(logits, target[0], axis=1)
        grads = tape.gradient(score, path)
        total = tf.tensordot(weights, grads, axes=[[0], [0]])[None]
        return total, logits, target

    def _split_chunk(self, x, baseline, alphas, weights, target):
        """`_chunk` with the path formed after the first op (`InputLinear`)."""
        start, step = self.split.affine(baseline), self.split.linear(x - baseline)
        path = start + _column(alphas, step) * step
        with tf.GradientTape() as tape:
            tape.watch(path)
            logits = self.split.logits(path)
            target = resolve_target(logits[:1], target)
            score = tf.gather(logits, target[0], axis=1)
        grads = tape.gradient(score, path)
        total = self.split.transpose(x, tf.tensordot(weights, grads, axes=[[0], [0]])[None])
        return total, logits, target

    def __call__(self, x, baseline, steps: int, target: int, batch_size: int):
        """Attribution (1, ...), logits at the input and baseline, resolved target."""
        alphas = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)  # input first
        weights = np.full(steps + 1, 1.0 / steps, dtype=np.float32)
        weights[[0, -1]] *= 0.5  # trapezoid rule
        total = None
        first_logits = last_logits = None
        t = np.array([target], dtype=np.int32)
        for start in range(0, steps + 1, batch_size):
            stop = min(start + batch_size, steps + 1)
            part, logits, resolved = self._fn(
                x, baseline, alphas[start:stop], weights[start:stop], t
            )
            t = resolved.numpy()
            total = part if total is None else total + part
            if first_logits is None:
                first_logits = logits[:1].numpy()
            last_logits = logits[-1:].numpy()
        attribution = (np.asarray(x) - np.asarray(baseline)) * total.numpy()
        return attribution, first_logits, last_logits, int(t[0])


class SmoothGradEngine:
    """Sum of gradients over ``x + N(0, σ²)`` copies drawn from a seed.

    Each call also runs the clean input (first row of the batch), so the target is
    resolved and the logits come back in the same compiled call. When the first op is
    linear (`InputLinear`) the copies are made after it, ``A x + b + σ A ε``: ``A ε``
    depends only on the seed, so it is computed once and kept for the next calls
    (`NOISE_KEPT` draws), and the gradients are summed before the one ``Aᵀ``.
    """

    #: Draws of ``A ε`` kept per engine (a draw of 32 copies of a 64 x 64 x 16 first
    #: layer output is 8 MB).
    NOISE_KEPT = 4

    def __init__(self, graph: Graph, folded: bool = False):
        self.graph, self.folded = graph, folded
        self.split = InputLinear.of(graph) if folded else None
        spec, seed = input_signature(graph), tf.TensorSpec((2,), tf.int32)
        count, sigma = tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32)
        if self.split is None:
            self._fn = compile_function(self._chunk, [spec, count, sigma, seed, TARGETS_SPEC])
        else:
            self._noise_fn = compile_function(self._first_noise, [spec, count, seed])
            noise = tf.TensorSpec(None, tf.float32)
            self._fn = compile_function(self._split_chunk, [spec, noise, sigma, TARGETS_SPEC])
            self._noise = Memo(self.NOISE_KEPT)

    def _chunk(self, x, n, sigma, seed, target):
        noisy = x + sigma * _unit_noise(x, n, seed)
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            logits = _logits(self.graph, tf.concat([x, noisy], axis=0), self.folded)
            target = resolve_target(logits[:1], target)
            score = tf.gather(logits[1:], target[0], axis=1)
        grads = tape.gradient(score, noisy)
        return tf.reduce_sum(grads, axis=0, keepdims=True), logits[:1], target

    def _first_noise(self, x, n, seed):
        return self.split.linear(_unit_noise(x, n, seed))

    def _split_chunk(self, x, noise, sigma, target):
        """`_chunk` with the copies made after the first op (`noise` = ``A ε``)."""
        clean = self.split.affine(x)
        noisy = clean + sigma * noise
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            logits = self.split.logits(tf.concat([clean, noisy], axis=0))
            target = resolve_target(logits[:1], target)
            score = tf.gather(logits[1:], target[0], axis=1)
        grads = tape.gradient(score, noisy)
        total = self.split.transpose(x, tf.reduce_sum(grads, axis=0, keepdims=True))
        return total, logits[:1], target

    def _call(self, x, n, sigma, seed, target):
        if self.split is None:
            return self._fn(x, n, sigma, seed, target)
        key = (tuple(int(v) for v in seed), n, tuple(np.shape(x)[1:]))
        noise, _ = self._noise.get(key, lambda: self._noise_fn(x, n, seed))
        return self._fn(x, noise, sigma, target)

    def __call__(self, x, samples, sigma, seed, target, batch_size):
        """(mean gradient (1, ...), logits of x (1, K), resolved target)."""
        total, logits = None, None
        t = np.array([target], dtype=np.int32)
        for index, start in enumerate(range(0, samples, batch_size)):
            n = min(batch_size, samples - start)
            part, row, resolved = self._call(
                x, n, np.float32(sigma), np.array([seed, index], dtype=np.int32), t
            )
            t = resolved.numpy()
            logits = row.numpy() if logits is None else logits
            total = part if total is None else total + part
        return total.numpy() / samples, logits, int(t[0])


def _unit_noise(x, n, seed):
    """`n` draws of N(0, 1) shaped like one input of `x`, from the stateless `seed`."""
    return tf.random.stateless_normal(tf.concat([[n], tf.shape(x)[1:]], axis=0), seed)


def occlusion_windows(shape, window: int, stride: int):
    """Top-left corners of the windows along one axis, covering the last pixels too."""
    size = shape
    if window >= size:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def occlusion(forward: ForwardEngine, x, target, window, stride, fill, batch_size):
    """Occlusion map (rows, cols) for one input x (1, rows, cols, channels)."""
    x = np.asarray(x, dtype=np.float32)
    rows, cols = x.shape[1:3]
    wr, wc = min(window, rows), min(window, cols)
    corners = [
        (r, c)
        for r in occlusion_windows(rows, wr, stride)
        for c in occlusion_windows(cols, wc, stride)
    ]
    logits = forward(x)[0].numpy()
    t = int(np.argmax(logits[0])) if target < 0 else int(target)
    reference = float(logits[0, t])
    fill_value = x.reshape(-1, x.shape[-1]).mean(axis=0) if fill is None else np.float32(fill)
    total = np.zeros((rows, cols), dtype=np.float64)
    count = np.zeros((rows, cols), dtype=np.float64)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        batch = np.repeat(x, len(chunk), axis=0)
        for i, (r, c) in enumerate(chunk):
            batch[i, r : r + wr, c : c + wc] = fill_value
        scores = forward(batch)[0].numpy()[:, t]
        for (r, c), score in zip(chunk, scores, strict=True):
            total[r : r + wr, c : c + wc] += reference - score
            count[r : r + wr, c : c + wc] += 1
    return total / np.maximum(count, 1), logits, t, len(corners)
