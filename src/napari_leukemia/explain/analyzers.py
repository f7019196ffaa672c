"""Build each analyzer once per model and reuse it; run a method on prepared inputs.

Compiled engines are stored on the Keras model object itself (a plain attribute the
model's tracking ignores), so they live exactly as long as the model and a second map
costs no tracing. Engines read the model's weights at every call, so maps follow
further training. `clear_cache(model)` drops them.

`attribute` is the batch-level entry point for numpy inputs that are already what the
model takes (no preprocessing, no mapping back).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import numpy as np

from ..model.backend import keras_module
from .methods import ExplainError, method_info, resolve_params

_ATTRIBUTE = "_napari_leukemia_explain_cache"
_LOCK = threading.RLock()


def _check_backend():
    keras = keras_module()
    if keras.backend.backend() != "tensorflow":
        raise ExplainError(
            f"The attribution engine needs the TensorFlow backend of Keras, but Keras runs "
            f"on {keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing."
        )
    return keras


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


def _cached(model, key, build):
    with _LOCK:
        cache = _cache(model)
        if key not in cache:
            cache[key] = build()
        return cache[key]


def get_graph(model):
    """The model's op graph (softmax stripped), built once."""
    from .graph import build_graph

    _check_backend()
    return _cached(model, "graph", lambda: build_graph(model))


def get_lrp_graph(model):
    """The graph with BatchNormalization folded into linear layers: (graph, merged pairs)."""
    from .lrp.canonize import fold_batchnorm

    return _cached(model, "lrp_graph", lambda: fold_batchnorm(get_graph(model)))


def get_engine(model, method: str, params: dict):
    """The compiled engine serving `method` with `params` (built on first use)."""
    family = "forward" if method == "forward" else method_info(method).family
    if method in ("gradient", "abs_gradient", "gradient_x_input"):
        from .gradients import GradientEngine

        return _cached(model, "gradient", lambda: GradientEngine(get_graph(model)))
    if method == "integrated_gradients":
        from .gradients import IntegratedGradientsEngine

        return _cached(model, "ig", lambda: IntegratedGradientsEngine(get_graph(model)))
    if method == "smoothgrad":
        from .gradients import SmoothGradEngine

        return _cached(model, "smoothgrad", lambda: SmoothGradEngine(get_graph(model)))
    if method == "occlusion" or method == "forward":
        from .gradients import ForwardEngine

        return _cached(model, "forward", lambda: ForwardEngine(get_graph(model)))
    if family == "cam":
        from .cam import CAMEngine, default_layer, named_layer

        graph = get_graph(model)
        layer = params.get("layer")
        key = default_layer(graph) if layer is None else named_layer(graph, layer)
        plus = method == "grad_cam_pp"
        return _cached(model, ("cam", key, plus), lambda: CAMEngine(graph, key, plus))
    if family == "lrp":
        from .lrp.analyzer import LRPAnalyzer
        from .lrp.composites import for_method

        composite = for_method(method, params)
        graph, _ = get_lrp_graph(model)
        return _cached(model, ("lrp", composite), lambda: LRPAnalyzer(graph, composite, method))
    raise ExplainError(f"No engine for method {method!r}.")


@dataclass
class RawMap:
    """A method's result on one model input (before any mapping back to an image)."""

    map: np.ndarray  # (rows, cols) float32, channels summed
    logits: np.ndarray  # (classes,)
    target: int
    diagnostics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    layer: str | None = None


@dataclass
class _Run:
    """What every runner gets: the model, its engine and graph, one input, the target."""

    model: object
    method: str
    x: np.ndarray  # (rows, cols, channels) float32
    target: np.ndarray  # (1,) int32, -1 = the predicted class
    params: dict
    domain: tuple[float, float] | None
    engine: object
    graph: object
    notes: list = field(default_factory=list)
    diagnostics: dict = field(default_factory=dict)

    @property
    def batch(self) -> np.ndarray:
        return self.x[None]

    def batch_size(self) -> int:
        from .gradients import auto_batch

        return auto_batch(self.graph, self.x.shape, self.params.get("batch_size"))

    def result(self, attribution, logits, resolved, layer=None) -> RawMap:
        return RawMap(
            map=np.asarray(attribution, dtype=np.float32),
            logits=np.asarray(logits, dtype=np.float32),
            target=int(resolved),
            diagnostics=self.diagnostics,
            notes=self.notes,
            layer=layer,
        )


_GRADIENT_FORMS = {
    "gradient": lambda grad, x: grad.sum(axis=-1),
    "abs_gradient": lambda grad, x: np.abs(grad).sum(axis=-1),
    "gradient_x_input": lambda grad, x: (grad * x).sum(axis=-1),
}


def _run_gradient(run: _Run) -> RawMap:
    grad, logits, resolved = run.engine(run.batch, run.target)
    attribution = _GRADIENT_FORMS[run.method](grad.numpy()[0], run.x)
    return run.result(attribution, logits.numpy()[0], resolved.numpy()[0])


def _run_integrated_gradients(run: _Run) -> RawMap:
    baseline = run.params["baseline"]
    try:
        base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), run.x.shape)[None]
    except ValueError as error:
        raise ExplainError(
            f"The baseline of shape {np.shape(baseline)} does not match the model "
            f"input {run.x.shape}."
        ) from error
    steps = run.params["steps"]
    values, first, last, resolved = run.engine(
        run.batch, base, steps, int(run.target[0]), run.batch_size()
    )
    total = float(values.sum())
    delta = float(first[0, resolved] - last[0, resolved])
    gap = abs(total - delta) / max(abs(delta), 1e-12)
    run.diagnostics.update(
        attribution_sum=total,
        logit_difference=delta,
        completeness_gap=gap,
        baseline_logit=float(last[0, resolved]),
    )
    if gap > 0.05 and abs(delta) > 1e-6:
        run.notes.append(
            f"Integrated Gradients: attributions sum to {total:.4g} but f(x) − f(baseline)"
            f" = {delta:.4g} ({100 * gap:.0f} % apart); increase steps."
        )
    return run.result(values[0].sum(axis=-1), first[0], resolved)


def _run_smoothgrad(run: _Run) -> RawMap:
    logits = get_engine(run.model, "forward", {})(run.batch).numpy()[0]
    resolved = int(np.argmax(logits)) if run.target[0] < 0 else int(run.target[0])
    spread = float(run.x.max() - run.x.min())
    if spread == 0:
        spread = 1.0
        run.notes.append("The input is constant; SmoothGrad noise σ is relative to 1.")
    sigma = run.params["noise"] * spread
    p = run.params
    grad = run.engine(run.batch, p["samples"], sigma, p["seed"], resolved, run.batch_size())
    run.diagnostics["sigma"] = sigma
    return run.result(grad[0].sum(axis=-1), logits, resolved)


def _run_occlusion(run: _Run) -> RawMap:
    from .gradients import occlusion

    rows, cols = run.x.shape[:2]
    window = run.params["window"] or max(2, int(round(min(rows, cols) / 8)))
    stride = run.params["stride"] or max(1, window // 2)
    attribution, logits, resolved, n = occlusion(
        run.engine,
        run.batch,
        int(run.target[0]),
        window,
        stride,
        run.params["fill"],
        run.batch_size() * 3,
    )
    run.diagnostics.update(window=window, stride=stride, windows=n)
    return run.result(attribution, logits[0], resolved)


def _run_cam(run: _Run) -> RawMap:
    from .cam import layer_name

    cam, logits, resolved, low = run.engine(run.batch, run.target)
    run.diagnostics["feature_shape"] = tuple(int(v) for v in low.shape[1:3])
    layer = layer_name(run.graph, run.engine.key)
    return run.result(cam.numpy()[0, ..., 0], logits.numpy()[0], resolved.numpy()[0], layer)


def _deep_taylor_bounds(run: _Run) -> tuple[float, float]:
    """zᴮ bounds: given, else the model's input domain, else the input's own range."""
    given_low, given_high = run.params["low"], run.params["high"]
    x_min, x_max = float(run.x.min()), float(run.x.max())
    low = given_low if given_low is not None else (run.domain[0] if run.domain else x_min)
    high = given_high if given_high is not None else (run.domain[1] if run.domain else x_max)
    if high <= low:
        high = low + 1.0
    if given_low is None and run.domain is None:
        run.notes.append(
            f"Deep Taylor bounds taken from the input's own range [{low:.4g}, "
            f"{high:.4g}]; pass low= and high= for the model's true input domain."
        )
    if x_min < low - 1e-6 or x_max > high + 1e-6:
        run.notes.append(
            f"The input has values outside [low, high] = [{low:g}, {high:g}]; the "
            "zᴮ rule assumes low ≤ x ≤ high."
        )
    run.diagnostics.update(low=low, high=high)
    return low, high


def _run_lrp(run: _Run) -> RawMap:
    import tensorflow as tf

    low, high = _deep_taylor_bounds(run) if run.method == "deep_taylor" else (0.0, 1.0)
    relevance, logits, resolved = run.engine(
        run.batch, run.target, tf.constant(low, tf.float32), tf.constant(high, tf.float32)
    )
    attribution = relevance.numpy()[0].sum(axis=-1)
    run.diagnostics["relevance_sum"] = float(attribution.sum())
    run.diagnostics["rules"] = run.engine.composite.name
    _, merged = get_lrp_graph(run.model)
    if merged:
        run.diagnostics["folded_batchnorm"] = merged
    return run.result(attribution, logits.numpy()[0], resolved.numpy()[0])


#: The runner of each method, by method id or (else) by method family.
_RUNNERS = {
    "integrated_gradients": _run_integrated_gradients,
    "smoothgrad": _run_smoothgrad,
    "gradient": _run_gradient,
    "perturbation": _run_occlusion,
    "cam": _run_cam,
    "lrp": _run_lrp,
}


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
    run = _Run(
        model=model,
        method=method,
        x=np.asarray(x, dtype=np.float32),
        target=np.array([-1 if target is None else int(target)], dtype=np.int32),
        params=params,
        domain=domain,
        engine=get_engine(model, method, params),
        graph=get_graph(model),
    )
    runner = _RUNNERS.get(method) or _RUNNERS[method_info(method).family]
    return runner(run)


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
    """
    values = resolve_params(method, params)
    batch = np.asarray(x, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    targets = [None] * len(batch) if target is None else list(np.broadcast_to(target, len(batch)))
    graph = get_graph(model)
    classes = graph.shapes.get(graph.output, (None, None))[-1]
    for t in targets:
        if t is not None and classes is not None and not 0 <= int(t) < classes:
            raise ExplainError(f"target {t} does not exist; the model has {classes} classes.")
    family = method_info(method).family
    if family in ("gradient", "lrp", "cam") and method not in (
        "integrated_gradients",
        "smoothgrad",
        "deep_taylor",
    ):
        return _attribute_batched(model, batch, method, targets, values)
    results = [
        run_method(model, method, xi, ti, values) for xi, ti in zip(batch, targets, strict=True)
    ]
    return (
        np.stack([r.map for r in results]),
        np.stack([r.logits for r in results]),
        np.array([r.target for r in results]),
    )


def _attribute_batched(model, batch, method, targets, values):
    """One engine call for the whole batch (gradient family, LRP, CAM)."""
    import tensorflow as tf

    engine = get_engine(model, method, values)
    t = np.array([-1 if v is None else int(v) for v in targets], dtype=np.int32)
    if method in ("gradient", "abs_gradient", "gradient_x_input"):
        grad, logits, resolved = engine(batch, t)
        grad = grad.numpy()
        maps = {
            "gradient": grad.sum(-1),
            "abs_gradient": np.abs(grad).sum(-1),
            "gradient_x_input": (grad * batch).sum(-1),
        }[method]
    elif method in ("grad_cam", "grad_cam_pp"):
        cam, logits, resolved, _ = engine(batch, t)
        maps = cam.numpy()[..., 0]
    else:
        relevance, logits, resolved = engine(batch, t, tf.constant(0.0), tf.constant(1.0))
        maps = relevance.numpy().sum(-1)
    return maps.astype(np.float32), logits.numpy(), resolved.numpy()
