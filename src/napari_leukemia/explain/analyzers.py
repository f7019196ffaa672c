"""Build each analyzer once per model and reuse it; run a method on prepared inputs.

Compiled engines are stored on the Keras model object itself (a plain attribute the
model's tracking ignores), so they live exactly as long as the model and a second map
costs no tracing. Engines read the model's weights at every call, so maps follow
further training. `clear_cache(model)` drops them.

`attribute` is the batch-level entry point for numpy inputs that are already what the
model takes (no preprocessing, no mapping back); `predict` is the compiled forward pass
that `classify` uses. The per-family work is in `runners`.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from ..model.backend import keras_module
from .methods import ExplainError, resolve_params

_ATTRIBUTE = "_napari_leukemia_explain_cache"
_LOCK = threading.RLock()


def _check_backend():
    keras = keras_module()
    if _BACKEND_OK:
        return keras
    if keras.backend.backend() != "tensorflow":
        raise ExplainError(
            f"The attribution engine needs the TensorFlow backend of Keras, but Keras runs "
            f"on {keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing."
        )
    _BACKEND_OK.append(True)
    return keras


_BACKEND_OK: list = []  # non-empty once the TensorFlow backend was checked


def _cache(model) -> dict:
    try:
        return object.__getattribute__(model, _ATTRIBUTE)
    except AttributeError:
        cache: dict = {}
        object.__setattr__(model, _ATTRIBUTE, cache)
        return cache


def clear_cache(model) -> None:
    """Forget the compiled analyzers of `model` (e.g. after replacing layers)."""
    with _LOCK, contextlib.suppress(AttributeError):
        object.__delattr__(model, _ATTRIBUTE)


def cached(model, key, build):
    """`model`'s cached value under `key`, built (once, under a lock) on first use."""
    with _LOCK:
        cache = _cache(model)
        if key not in cache:
            cache[key] = build()
        return cache[key]


def get_graph(model):
    """The model's op graph (softmax stripped), built once.

    A model whose input signature or layers changed since the graph was built (a
    Sequential model popped and extended, layers replaced) gets its cache dropped and
    a new graph, so compiled engines never run a stale graph or input signature.
    """
    from .graph import build_graph

    _check_backend()
    with _LOCK:
        signature = _signature(model)
        if cached(model, "signature", lambda: signature) != signature:
            clear_cache(model)
            cached(model, "signature", lambda: signature)
        return cached(model, "graph", lambda: build_graph(model))


def _signature(model) -> tuple:
    """What the cached graph depends on: the input shape and the layer objects."""
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        shape = None
    return shape, tuple(id(layer) for layer in getattr(model, "layers", ()))


def get_lrp_graph(model):
    """The graph with BatchNormalization folded into linear layers: (graph, merged pairs)."""
    from .lrp.canonize import fold_batchnorm

    return cached(model, "lrp_graph", lambda: fold_batchnorm(get_graph(model)))


def gradient_graph(model):
    """The graph gradient methods run on: BatchNorm folded (same function, fewer ops)."""
    return get_lrp_graph(model)[0]


def forward_engine(model):
    """The compiled forward pass of `model`: (logits, model output) of a batch."""
    from .gradients import ForwardEngine

    return cached(model, "forward", lambda: ForwardEngine(get_graph(model)))


def get_engine(model, method: str, params: dict):
    """The compiled engine serving `method` with `params` (built on first use)."""
    if method == "forward":
        return forward_engine(model)
    from .runners import runner_for

    return runner_for(method).engine(model, {**params, "_method": method})


def predict(model, batch: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """The model's output (e.g. class probabilities) for a prepared batch, compiled.

    The same compiled forward pass serves `classify`, `explain` and batches; a batch
    larger than the memory budget is run in chunks. A model the graph walker cannot
    read (subclassed) is called through one compiled ``model(x, training=False)``.
    """
    from .gradients import activation_bytes

    batch = np.asarray(batch, dtype=np.float32)
    try:
        engine = forward_engine(model)
        graph = get_graph(model)
        size = batch_size or max(
            1, int(MEMORY_BUDGET // max(activation_bytes(graph, batch.shape[1:]), 1))
        )
        call = lambda part: engine(part)[1]  # noqa: E731
    except ExplainError:
        call, size = _plain_forward(model), batch_size or 256
    if len(batch) == 0:
        return np.zeros((0, *_output_shape(model)), dtype=np.float32)
    parts = [call(batch[i : i + size]).numpy() for i in range(0, len(batch), size)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _output_shape(model) -> tuple:
    return tuple(int(d) for d in model.outputs[0].shape[1:])


def _plain_forward(model):
    tf = _tf()

    def build():
        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
        return tf.function(
            lambda x: model(x, training=False), input_signature=[spec], autograph=False
        )

    function = cached(model, "plain_forward", build)
    return lambda x: function(tf.convert_to_tensor(x))


def _tf():
    from ..model.backend import tensorflow_module

    return tensorflow_module()


#: Activation memory allowed for one batched forward pass (bytes), as for gradients.
MEMORY_BUDGET = 256 * 2**20


@dataclass
class RawMap:
    """A method's result on one model input (before any mapping back to an image)."""

    map: np.ndarray  # (rows, cols) float32, channels summed
    logits: np.ndarray  # (classes,)
    target: int
    diagnostics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    layer: str | None = None


def run_batch(model, method, x, targets, params, domain=None, graph=None):
    """`BatchMaps` of prepared inputs x (N, rows, cols, channels); params resolved.

    targets: one class index or None (predicted class) per input. graph: the model's
    `get_graph`, when the caller has it.
    """
    from .runners import Batch, runner_for

    batch = np.asarray(x, dtype=np.float32)
    t = np.array([-1 if v is None else int(v) for v in targets], dtype=np.int32)
    if graph is None:
        graph = get_graph(model)  # check the backend and walk the model before anything else
    work = Batch(model, method, batch, t, params, domain, graph)
    return runner_for(method).run_batch(work)


def run_method(
    model,
    method: str,
    x: np.ndarray,
    target: int | None,
    params: dict,
    domain: tuple[float, float] | None = None,
) -> RawMap:
    """Explain one prepared input `x` (rows, cols, channels) with resolved `params`.

    target: class index or None (predicted class). domain: the input's value range for
    Deep Taylor's zᴮ rule when known (plugin models), else the image's own range.
    """
    result = run_batch(model, method, np.asarray(x)[None], [target], params, domain)
    return RawMap(
        map=result.maps[0],
        logits=np.asarray(result.logits[0], dtype=np.float32),
        target=int(result.targets[0]),
        diagnostics=result.diagnostics[0],
        notes=result.item_notes[0] + result.notes,
        layer=result.layer,
    )


def attribute(model, x, method: str, target=None, **params):
    """Maps for a batch of inputs already shaped for `model`; no preprocessing.

    Parameters
    ----------
    model : a Sequential or functional ``keras.Model`` (TensorFlow backend).
    x : array (N, rows, cols, channels) or one input (rows, cols, channels).
    method : a method id (see `METHODS`).
    target : None (each input's predicted class), a class index, or one index per input.

    Returns
    -------
    maps (N, rows, cols) float32 with channels summed, logits (N, classes), targets (N,).
    Gradient, LRP and CAM methods run the whole batch in one compiled call (in chunks
    only when it would not fit the memory budget).
    """
    values = resolve_params(method, params)
    batch = np.asarray(x, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    if target is None or isinstance(target, Integral):
        targets = [target] * len(batch)
    else:
        targets = list(np.broadcast_to(target, len(batch)))
    graph = get_graph(model)
    classes = graph.shapes.get(graph.output, (None, None))[-1]
    for t in targets:
        if t is not None and classes is not None and not 0 <= int(t) < classes:
            raise ExplainError(f"target {t} does not exist; the model has {classes} classes.")
    result = run_batch(model, method, batch, targets, values, graph=graph)
    return result.maps, np.asarray(result.logits), np.asarray(result.targets)
