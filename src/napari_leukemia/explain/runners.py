"""One runner per method family: build the compiled engine once, run a batch of inputs.

Every runner has the same interface (after Zennit's `Attributor` classes):

- ``engine(model, params)``: the compiled engine for `model` (built on first use and
  stored on the model, see `analyzers`);
- ``run_batch(model, batch, targets, params, domain)``: maps of prepared inputs
  (N, rows, cols, channels) as a `BatchMaps`; one input is a batch of one.

Which runner serves a method is the ``runner`` field of its `MethodInfo`, so a new
method is a table row plus, for a new family, one class here. Batches are cut into
chunks only when their activations would not fit the memory budget
(`gradients.auto_batch`); the chunking is told in `BatchMaps.notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.backend import tensorflow_module
from .methods import ExplainError, method_info

tf = tensorflow_module()


@dataclass
class BatchMaps:
    """Maps of a batch of model inputs, channels summed.

    maps (N, rows, cols) float32, logits (N, classes), targets (N,); per input its
    diagnostics and notes; `notes` says what was done to the batch as a whole.
    """

    maps: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    diagnostics: list[dict]
    item_notes: list[list[str]]
    notes: list[str] = field(default_factory=list)
    layer: str | None = None

    def __len__(self) -> int:
        return len(self.maps)


@dataclass
class Batch:
    """What a runner gets: the model, the prepared inputs, targets and parameters."""

    model: object
    method: str
    x: np.ndarray  # (N, rows, cols, channels) float32
    targets: np.ndarray  # (N,) int32, -1 = the predicted class
    params: dict
    domain: tuple[float, float] | None = None
    graph: object = None  # the model's `Graph` (looked up when not given)
    scratch: dict = field(default_factory=dict)  # per-call state (runners are shared)

    def __post_init__(self):
        if self.graph is None:
            from .analyzers import get_graph

            self.graph = get_graph(self.model)

    def chunk_size(self, factor: int = 1) -> int:
        from .gradients import auto_batch

        return factor * auto_batch(self.graph, self.x.shape[1:], self.params.get("batch_size"))


def chunks(n: int, size: int, what: str) -> tuple[list[slice], list[str]]:
    """Slices of at most `size` inputs covering `n`, and a note when there is more than one."""
    size = max(1, int(size))
    parts = [slice(start, min(start + size, n)) for start in range(0, n, size)]
    notes = []
    if len(parts) > 1:
        notes.append(
            f"The {n} {what} were processed in {len(parts)} chunks of at most {size} "
            "(memory budget of one batched pass; pass batch_size= to change it)."
        )
    return parts, notes


class Runner:
    """Base runner: a per-input loop over `run_one` (for methods that batch internally)."""

    #: cache key of the compiled engine on the model
    key = ""

    def engine(self, model, params: dict):
        raise NotImplementedError

    def batch_engine(self, batch: Batch):
        """The engine serving `batch`, looked up once per batch (kept in its scratch)."""
        engine = batch.scratch.get("engine")
        if engine is None:
            params = {**batch.params, "_method": batch.method}
            engine = batch.scratch["engine"] = self.engine(batch.model, params)
        return engine

    def run_batch(self, batch: Batch) -> BatchMaps:
        results = [self.run_one(batch, i) for i in range(len(batch.x))]
        return BatchMaps(
            maps=_stack([r[0] for r in results], batch.x.shape[1:3]),
            logits=np.stack([r[1] for r in results]) if results else np.zeros((0, 0)),
            targets=np.array([r[2] for r in results], dtype=np.int64),
            diagnostics=[r[3] for r in results],
            item_notes=[r[4] for r in results],
        )

    def run_one(self, batch: Batch, i: int):
        """(map, logits, target, diagnostics, notes) of input `i`."""
        raise NotImplementedError


def _stack(maps, shape) -> np.ndarray:
    if not maps:
        return np.zeros((0, *shape), dtype=np.float32)
    return np.stack(maps).astype(np.float32)


def _join(parts: list) -> np.ndarray:
    """The chunks' arrays as one (the one chunk of most calls as it is)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def channel_sum(values: np.ndarray) -> np.ndarray:
    """The sum over the last (channel) axis, one whole channel at a time: NumPy reduces
    a short last axis pixel by pixel (~70 µs for a 64 x 64 x 3 map, ~5 µs this way)."""
    if values.shape[-1] == 0:
        return values.sum(axis=-1)
    total = values[..., 0].copy()
    for channel in range(1, values.shape[-1]):
        total += values[..., channel]
    return total


class ChunkedRunner(Runner):
    """Methods with one compiled call for a whole batch: it is cut only to fit memory."""

    def run_batch(self, batch: Batch) -> BatchMaps:
        n = len(batch.x)
        parts, notes = chunks(n, batch.chunk_size(), "inputs")
        maps, logits, targets = [], [], []
        for part in parts:
            m, lg, t = self.call(batch, part)
            maps.append(m)
            logits.append(lg)
            targets.append(t)
        if not parts:
            return BatchMaps(
                _stack([], batch.x.shape[1:3]),
                np.zeros((0, 0), np.float32),
                np.zeros(0, np.int64),
                [],
                [],
                notes,
            )
        result = BatchMaps(
            maps=_join(maps).astype(np.float32),
            logits=_join(logits),
            targets=_join(targets).astype(np.int64),
            diagnostics=[{} for _ in range(n)],
            item_notes=[[] for _ in range(n)],
            notes=notes,
        )
        self.finish(batch, result)
        return result

    def call(self, batch: Batch, part: slice):
        """(maps, logits, targets) of the inputs in `part`, one compiled call."""
        raise NotImplementedError

    def finish(self, batch: Batch, result: BatchMaps) -> None:
        """Per-input diagnostics after the maps are known (nothing by default)."""


_GRADIENT_FORMS = {
    "gradient": lambda grad, x: channel_sum(grad),
    "abs_gradient": lambda grad, x: channel_sum(np.abs(grad)),
    "gradient_x_input": lambda grad, x: channel_sum(grad * x),
}


class GradientRunner(ChunkedRunner):
    """Gradient, |Gradient|, Gradient×Input: one compiled ∂logit/∂input per chunk."""

    key = "gradient"

    def engine(self, model, params):
        from .analyzers import cached, gradient_graph
        from .gradients import GradientEngine

        return cached(model, "gradient", lambda: GradientEngine(gradient_graph(model), True))

    def call(self, batch, part):
        x = batch.x[part]
        grad, logits, resolved = self.batch_engine(batch)(x, batch.targets[part])
        return _GRADIENT_FORMS[batch.method](grad.numpy(), x), logits.numpy(), resolved.numpy()


class CAMRunner(ChunkedRunner):
    """Grad-CAM and Grad-CAM++ on one feature-map layer (default: the last conv block)."""

    key = "cam"

    def engine(self, model, params):
        from .analyzers import cached

        layer, plus = params.get("layer"), params.get("_method") == "grad_cam_pp"
        return cached(model, ("cam layer", layer, plus), lambda: self._build(model, layer, plus))

    @staticmethod
    def _build(model, layer, plus):
        """The engine of the feature map `layer` names (None: the default layer); one
        engine per feature map, whatever name reached it."""
        from .analyzers import cached, get_graph
        from .cam import CAMEngine, default_layer, named_layer

        graph = get_graph(model)
        key = default_layer(graph) if layer is None else named_layer(graph, layer)
        return cached(model, ("cam", key, plus), lambda: CAMEngine(graph, key, plus))

    def call(self, batch, part):
        cam, logits, resolved, low = self.batch_engine(batch)(batch.x[part], batch.targets[part])
        batch.scratch["feature_shape"] = tuple(int(v) for v in low.shape[1:3])
        return cam.numpy()[..., 0], logits.numpy(), resolved.numpy()

    def finish(self, batch, result):
        from .cam import layer_name

        result.layer = layer_name(batch.graph, self.batch_engine(batch).key)
        for d in result.diagnostics:
            d["feature_shape"] = batch.scratch["feature_shape"]


class LRPRunner(ChunkedRunner):
    """LRP-z, LRP-ε, LRP-αβ and Deep Taylor on the BatchNorm-folded graph."""

    key = "lrp"

    def engine(self, model, params):
        from .analyzers import cached

        method = params.get("_method")
        key = ("lrp rules", method, *(params.get(name) for name in ("epsilon", "alpha", "beta")))
        return cached(model, key, lambda: self._build(model, method, params))

    @staticmethod
    def _build(model, method, params):
        """The analyzer of `method`'s composite (`for_method` reads epsilon, alpha and
        beta); one analyzer per composite, whatever method and parameters reached it."""
        from .analyzers import cached, get_lrp_graph
        from .lrp.analyzer import LRPAnalyzer
        from .lrp.composites import for_method

        composite = for_method(method, params)
        graph, _ = get_lrp_graph(model)
        return cached(model, ("lrp", composite), lambda: LRPAnalyzer(graph, composite, method))

    def run_batch(self, batch):
        if batch.method == "deep_taylor":
            batch.scratch["bounds"] = [_deep_taylor_bounds(batch, x) for x in batch.x]
            if (
                len({b[:2] for b in batch.scratch["bounds"]}) > 1
            ):  # bounds from each input's own range
                return Runner.run_batch(self, batch)
        else:
            batch.scratch["bounds"] = [(0.0, 1.0, []) for _ in batch.x]
        return super().run_batch(batch)

    def run_one(self, batch, i):
        one = slice(i, i + 1)
        maps, logits, targets = self.call(batch, one, batch.scratch["bounds"][i])
        diagnostics = self._diagnostics(batch, maps[0], batch.scratch["bounds"][i])
        return (
            maps[0],
            logits[0],
            int(targets[0]),
            diagnostics,
            list(batch.scratch["bounds"][i][2]),
        )

    def call(self, batch, part, bounds=None):
        low, high, _ = bounds if bounds is not None else batch.scratch["bounds"][part.start]
        relevance, logits, resolved = self.batch_engine(batch)(
            batch.x[part], batch.targets[part], tf.constant(low), tf.constant(high)
        )
        return channel_sum(relevance.numpy()), logits.numpy(), resolved.numpy()

    def finish(self, batch, result):
        for i, (d, m) in enumerate(zip(result.diagnostics, result.maps, strict=True)):
            d.update(self._diagnostics(batch, m, batch.scratch["bounds"][i]))
            result.item_notes[i].extend(batch.scratch["bounds"][i][2])

    def _diagnostics(self, batch, attribution, bounds) -> dict:
        from .analyzers import get_lrp_graph

        engine = self.batch_engine(batch)
        out = {"relevance_sum": float(attribution.sum()), "rules": engine.composite.name}
        if engine.gradient_form:  # the same map, one gradient instead of the rule walk
            out["computed_as"] = "Gradient × Input (LRP-0 identity, ReLU network)"
        if batch.method == "deep_taylor":
            out.update(low=bounds[0], high=bounds[1])
        _, merged = get_lrp_graph(batch.model)
        if merged:
            out["folded_batchnorm"] = merged
        return out


def _deep_taylor_bounds(batch: Batch, x) -> tuple[float, float, list[str]]:
    """zᴮ bounds: given, else the model's input domain, else the input's own range."""
    given_low, given_high = batch.params["low"], batch.params["high"]
    domain = batch.domain
    x_min, x_max = float(x.min()), float(x.max())
    low = given_low if given_low is not None else (domain[0] if domain else x_min)
    high = given_high if given_high is not None else (domain[1] if domain else x_max)
    if high <= low:
        high = low + 1.0
    notes = []
    if given_low is None and domain is None:
        notes.append(
            f"Deep Taylor bounds taken from the input's own range [{low:.4g}, "
            f"{high:.4g}]; pass low= and high= for the model's true input domain."
        )
    if x_min < low - 1e-6 or x_max > high + 1e-6:
        notes.append(
            f"The input has values outside [low, high] = [{low:g}, {high:g}]; the "
            "zᴮ rule assumes low ≤ x ≤ high."
        )
    return float(low), float(high), notes


class IntegratedGradientsRunner(Runner):
    """Integrated Gradients: all path points of one input in one compiled call."""

    key = "integrated_gradients"

    def engine(self, model, params):
        from .analyzers import cached, gradient_graph
        from .gradients import IntegratedGradientsEngine

        return cached(model, "ig", lambda: IntegratedGradientsEngine(gradient_graph(model), True))

    def run_one(self, batch, i):
        x = batch.x[i]
        baseline = batch.params["baseline"]
        baseline = 0.0 if baseline is None else baseline  # a plain model: black
        try:
            base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)[None]
        except ValueError as error:
            raise ExplainError(
                f"The baseline of shape {np.shape(baseline)} does not match the model "
                f"input {x.shape}."
            ) from error
        steps = batch.params["steps"]
        size = batch.chunk_size()
        values, first, last, resolved = self.batch_engine(batch)(
            x[None], base, steps, int(batch.targets[i]), size
        )
        total = float(values.sum())
        delta = float(first[0, resolved] - last[0, resolved])
        gap = abs(total - delta) / max(abs(delta), 1e-12)
        diagnostics = {
            "attribution_sum": total,
            "logit_difference": delta,
            "completeness_gap": gap,
            "baseline_logit": float(last[0, resolved]),
        }
        notes = []
        if gap > 0.05 and abs(delta) > 1e-6:
            notes.append(
                f"Integrated Gradients: attributions sum to {total:.4g} but f(x) − "
                f"f(baseline) = {delta:.4g} ({100 * gap:.0f} % apart); increase steps."
            )
        return channel_sum(values[0]), first[0], resolved, diagnostics, notes


class SmoothGradRunner(Runner):
    """SmoothGrad: all noisy copies of one input (and the input) in one compiled call."""

    key = "smoothgrad"

    def engine(self, model, params):
        from .analyzers import cached, gradient_graph
        from .gradients import SmoothGradEngine

        return cached(model, "smoothgrad", lambda: SmoothGradEngine(gradient_graph(model), True))

    def run_one(self, batch, i):
        x = batch.x[i]
        notes = []
        spread = float(x.max() - x.min())
        if spread == 0:
            spread = 1.0
            notes.append("The input is constant; SmoothGrad noise σ is relative to 1.")
        p = batch.params
        sigma = p["noise"] * spread
        grad, logits, resolved = self.batch_engine(batch)(
            x[None], p["samples"], sigma, p["seed"], int(batch.targets[i]), batch.chunk_size()
        )
        return channel_sum(grad[0]), logits[0], resolved, {"sigma": sigma}, notes


class OcclusionRunner(Runner):
    """Occlusion: batched forward passes of occluded copies of each input."""

    key = "occlusion"

    def engine(self, model, params):
        from .analyzers import forward_engine

        return forward_engine(model)

    def run_one(self, batch, i):
        from .gradients import occlusion

        x = batch.x[i]
        rows, cols = x.shape[:2]
        window = batch.params["window"] or max(2, int(round(min(rows, cols) / 8)))
        stride = batch.params["stride"] or max(1, window // 2)
        attribution, logits, resolved, n = occlusion(
            self.batch_engine(batch),
            x[None],
            int(batch.targets[i]),
            window,
            stride,
            batch.params["fill"],
            batch.chunk_size(3),
        )
        diagnostics = {"window": window, "stride": stride, "windows": n}
        return attribution, logits[0], resolved, diagnostics, []


#: The runner of each method family, by the `MethodInfo.runner` key.
RUNNERS: dict[str, Runner] = {
    runner.key: runner
    for runner in (
        GradientRunner(),
        IntegratedGradientsRunner(),
        SmoothGradRunner(),
        OcclusionRunner(),
        CAMRunner(),
        LRPRunner(),
    )
}


def runner_for(method: str) -> Runner:
    """The runner serving `method` (from its `MethodInfo.runner`)."""
    info = method_info(method)
    if info.runner not in RUNNERS:
        raise ExplainError(f"No runner for method {method!r} (runner {info.runner!r}).")
    return RUNNERS[info.runner]
