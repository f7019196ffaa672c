"""Speed and memory of the attribution engine (`napari_leukemia.explain`).

Per-map time of every method on the bundled model (``load_model()``; when it is missing,
the plugin's default CNN from ``architectures.build("default")`` with random weights, 64x64
RGB), as a ratio to one forward+backward pass of the same model measured right before it
(a compiled ``tf.GradientTape`` gradient of one logit through the Keras layers).

Targets (issue 11): explaining the selected cell of a real 224x224 field, gradient
family and CAMs <= 1.5x, LRP rules <= 2x, Integrated Gradients (32 steps) and SmoothGrad
(32 samples) <= 8x; first call including graph walking and tracing <= 2 s. Batches: cells
per second of classify + LRP-ε and classify + Grad-CAM on 64 cells, as a share of the
batched forward+backward floor (aim >= 0.8); peak memory for one map and a 64-cell batch.

Every ratio is measured in one run, the reference and the candidate timed alternately
(`timing.ratio_ms`), so load from other jobs shifts both alike. "engine" times a map of a
prepared model input (``attribute``); "explain" times the whole ``explain()`` call as the
Explain widget makes it (the field and the selected cell's box): the map and mapping it
back, the cell's input remembered from the previous call (`napari_leukemia.memo`); "new cell"
clears that memo first, so it also cuts the cell's ROI out of the field and prepares it
(the cell's mask known, as for the cells of `detect_cells`). Batches: the 64 prepared
cell inputs of a stack through one compiled call (maps and logits together), and the
cells of one field through ``explain_full`` with their preparation.

Run: ``python benchmarks/bench_explain.py [--repeats N] [--no-memory] [--no-first]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from timing import ratio_ms, real_field  # noqa: E402

TARGETS = {
    "gradient": 1.5,
    "abs_gradient": 1.5,
    "gradient_x_input": 1.5,
    "grad_cam": 1.5,
    "grad_cam_pp": 1.5,
    "lrp_z": 2.0,
    "lrp_epsilon": 2.0,
    "lrp_alpha_beta": 2.0,
    "deep_taylor": 2.0,
    "integrated_gradients": 8.0,
    "smoothgrad": 8.0,
}
FIRST_CALL_TARGET = 2.0
SLOW_METHODS = {"integrated_gradients", "smoothgrad", "occlusion"}


def load():
    """(LoadedModel, description): the bundled model, or the default CNN as a stand-in."""
    from napari_leukemia.model import architectures
    from napari_leukemia.model.classify import LoadedModel, bundled_model_path, load_model
    from napari_leukemia.model.metadata import ModelInfo

    if bundled_model_path().is_file():
        loaded = load_model()
        return loaded, f"bundled model {loaded.path.name} ({loaded.info.architecture})"
    from napari_leukemia.model.backend import keras_module

    keras_module().utils.set_random_seed(0)
    model = architectures.build("default")
    info = ModelInfo(input=architectures.input_spec("default"), architecture="default")
    return LoadedModel(model, info), "default CNN, random weights (bundled model missing)"


def timed(function, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(keras_model):
    """A compiled forward+backward pass: the gradient of one logit through the Keras layers.

    The logits are the ``logits`` layer of the plugin's architectures (else the output).
    """
    import tensorflow as tf

    from napari_leukemia.model.backend import keras_module

    keras = keras_module()
    try:
        out = keras_model.get_layer("logits").output
    except ValueError:
        out = keras_model.outputs[0]
    sub = keras.Model(keras_model.inputs[0], out)
    spec = tf.TensorSpec((None, *keras_model.inputs[0].shape[1:]), tf.float32)

    @tf.function(input_signature=[spec], autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = sub(x, training=False)[:, 0]
        return tape.gradient(score, x)

    return lambda x: step(x).numpy()


def bench_speed(loaded, description, repeats):
    """Per-map ratios on the selected cell, three ways: the engine on the prepared input;
    `explain` as the widget calls it (the field and the cell's box), repeated on the
    same cell (its input remembered, `napari_leukemia.memo`); and a cell not seen before (the
    memo cleared; the cell's mask known, as for the cells of `detect_cells`)."""
    from napari_leukemia import memo
    from napari_leukemia.cells import detect_cells
    from napari_leukemia.explain import METHODS, attribute, explain
    from napari_leukemia.model.cell_context import full_mask
    from napari_leukemia.model.inputs import cell_input, convert

    model = loaded.keras_model
    spec = loaded.info.input
    field, field_name = real_field()
    cell = bbox = None
    if spec.kind == "cell":
        cell = detect_cells(field)[0]
        bbox = cell.bbox
        x = cell_input(field, bbox, spec, full_mask(cell, field.shape))[0].astype(np.float32)
    else:
        x = convert(field, spec).astype(np.float32)
    step = forward_backward(model)
    batch = x[None]

    def new_cell(m):
        memo.clear()
        explain(field, m, loaded, 0, bbox=cell)

    print(f"model: {description}; input {x.shape}; {field_name}, selected cell {bbox}")
    print(
        f"{'method':22s} {'fwd+bwd':>8s} {'engine':>7s} {'ratio':>6s} {'explain':>8s} "
        f"{'ratio':>6s} {'target':>7s}     {'new cell':>8s} {'ratio':>6s}"
    )
    rows = []
    for method in METHODS:
        n = max(5, repeats // 3) if method in SLOW_METHODS else repeats
        base, engine, engine_ratio = ratio_ms(
            lambda: step(batch), lambda m=method: attribute(model, x, m, target=0), n
        )
        _, full, ratio = ratio_ms(
            lambda: step(batch), lambda m=method: explain(field, m, loaded, 0, bbox=bbox), n
        )
        _, cold, cold_ratio = ratio_ms(lambda: step(batch), lambda m=method: new_cell(m), n)
        target = TARGETS.get(method)
        mark = "" if target is None else ("ok  " if ratio <= target else "SLOW")
        print(
            f"{method:22s} {base:8.2f} {engine:7.2f} {engine_ratio:6.2f} {full:8.2f} "
            f"{ratio:6.2f} {'' if target is None else f'<={target:g}':>7s} {mark:4s} "
            f"{cold:8.2f} {cold_ratio:6.2f}"
        )
        rows.append(
            {
                "method": method,
                "fwd_bwd_ms": base,
                "engine_ms": engine,
                "explain_ms": full,
                "ratio": ratio,
                "new_cell_ratio": cold_ratio,
                "target": target,
            }
        )
    print("(ms medians; ratios = time / forward+backward of one input, same run)")
    for points, method in ((33, "integrated_gradients"), (33, "smoothgrad")):
        stack = np.repeat(batch, points, axis=0)
        floor, _, floor_ratio = ratio_ms(lambda: step(batch), lambda s=stack: step(s), 10)
        print(
            f"  {method}: its {points} inputs as one batched forward+backward take "
            f"{floor_ratio:.2f}x one input (the floor of any batched implementation)"
        )
    if cell is not None:
        memo.clear()
        start = time.perf_counter()
        explain(field, "gradient", loaded, 0, bbox=bbox)
        print(
            f"  a box of a field not seen before (its cell's mask found by detecting the "
            f"field once): {1e3 * (time.perf_counter() - start):.1f} ms for the first map"
        )
    return rows


def cell_stack(loaded, n: int = 64):
    """`n` real cell model inputs (with their masks) from the first all4 fields, else
    synthetic ones."""
    from timing import REAL_DATA

    from napari_leukemia.cells import detect_cells
    from napari_leukemia.images import read_image
    from napari_leukemia.model.cell_context import full_mask
    from napari_leukemia.model.inputs import cell_inputs
    from napari_leukemia.synthetic import make_smear

    files = sorted(REAL_DATA.glob("*/*.jpg"))[::7] if REAL_DATA.is_dir() else []
    rois = []
    for i in range(200):
        field = read_image(files[i]) if i < len(files) else make_smear(seed=i).image
        cells = detect_cells(field)
        if cells:
            masks = [full_mask(c, field.shape) for c in cells]
            rois.extend(cell_inputs(field, [c.bbox for c in cells], loaded.info.input, masks)[0])
        if len(rois) >= n:
            break
    return np.stack(rois[:n]).astype(np.float32)


def bench_batch(loaded, repeats, n: int = 64):
    """Cells per second of classify + a map on `n` prepared cell inputs in one compiled
    call (`attribute`: maps and logits together), against the batched floor; and the
    cells of one field through `explain_full` (preparing included)."""
    from timing import real_field

    from napari_leukemia import memo
    from napari_leukemia.cells import detect_cells
    from napari_leukemia.explain import attribute, explain_full

    stack = cell_stack(loaded, n)
    step = forward_backward(loaded.keras_model)
    model = loaded.keras_model
    print(f"batch of {len(stack)} real cell inputs {stack.shape[1:]} (one stack):")
    for method in ("lrp_epsilon", "grad_cam"):
        floor, both, share = ratio_ms(
            lambda: step(stack), lambda m=method: attribute(model, stack, m), repeats
        )
        print(
            f"  classify + {method:12s} (one pass): {1e3 * n / both:7.0f} cells/s "
            f"({both:.1f} ms); floor {1e3 * n / floor:.0f} cells/s ({floor:.1f} ms batched "
            f"fwd+bwd): share {1 / share:.2f} {'ok' if 1 / share >= 0.8 else 'below 0.8'}"
        )
    field, _ = real_field()
    cells = detect_cells(field)

    def field_cells(m):
        memo.clear()
        explain_full(field, m, loaded, bbox=cells)

    for method in ("lrp_epsilon", "grad_cam"):
        ms = statistics.median(_times(lambda m=method: field_cells(m), repeats))
        print(
            f"  the {len(cells)} cells of a field, {method} with probabilities "
            f"(explain_full, inputs prepared each time): {ms:.1f} ms, "
            f"{1e3 * len(cells) / ms:.0f} cells/s"
        )


def _times(function, repeats: int) -> list[float]:
    function()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        out.append(1e3 * (time.perf_counter() - start))
    return out


def bench_first_call(loaded):
    """Seconds of the first explain() per method on a fresh copy of the model."""
    from napari_leukemia.explain import METHODS, explain
    from napari_leukemia.model.backend import keras_module
    from napari_leukemia.model.classify import LoadedModel

    keras = keras_module()
    field = np.random.default_rng(0).random((*loaded.info.input.size, 3))
    print(f"{'first call (graph + tracing)':32s} {'s':>6s}")
    worst = 0.0
    for method in METHODS:
        fresh = keras.models.clone_model(loaded.keras_model)
        fresh.set_weights(loaded.keras_model.get_weights())
        copy = LoadedModel(fresh, loaded.info)
        spec_kind = loaded.info.input.kind
        bbox = (0, 0, field.shape[0], field.shape[1]) if spec_kind == "cell" else None
        start = time.perf_counter()
        explain(field, method, copy, bbox=bbox)
        seconds = time.perf_counter() - start
        worst = max(worst, seconds)
        print(f"  {method:30s} {seconds:6.2f} {'ok' if seconds <= FIRST_CALL_TARGET else 'SLOW'}")
    return worst


_MEMORY_CHILD = r"""
import json, os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
sys.path.insert(0, {bench_dir!r})
from bench_explain import load
from napari_leukemia.explain import METHODS, explain
from napari_leukemia.model import architectures
from napari_leukemia.model.backend import keras_module

def peak():
    # VmHWM: this process's peak resident memory (ru_maxrss would include the parent's
    # peak, inherited across fork + exec)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
mode = sys.argv[1]
image = np.random.default_rng(0).random((224, 224, 3)).astype(np.float32)
if mode == "bundled":
    model, _ = load()
    bbox = (60, 60, 160, 160) if model.info.input.kind == "cell" else None
else:  # the default CNN taking whole 224x224 inputs
    keras_module().utils.set_random_seed(0)
    model = architectures.build("default", input_shape=(224, 224, 3))
    bbox = None
out = {{"baseline": peak()}}
for method in METHODS:
    kwargs = {{"bbox": bbox}} if bbox else {{}}
    explain(image, method, model, **kwargs)
    out[method] = peak()
if mode == "bundled":
    from bench_explain import cell_stack
    from napari_leukemia.explain import attribute
    stack = cell_stack(model, 64)
    for method in ("lrp_epsilon", "grad_cam"):
        attribute(model.keras_model, stack, method)
        out["64 cells: classify + " + method] = peak()
print(json.dumps(out))
"""


def bench_memory():
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    code = _MEMORY_CHILD.format(bench_dir=bench_dir)
    results = {}
    for mode, label in (
        ("bundled", "bundled model, 224x224 field"),
        ("field224", "default CNN with 224x224 input (plain keras.Model)"),
    ):
        run = subprocess.run(
            [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
        )
        peaks = json.loads(run.stdout.strip().splitlines()[-1])
        results[mode] = peaks
        base = peaks.pop("baseline")
        top = max(peaks.values())
        print(
            f"peak memory, {label}: {top:.0f} MB (process after model load "
            f"{base:.0f} MB; the maps add {top - base:.0f} MB) "
            f"{'ok' if top < 1024 else 'OVER 1 GB'}"
        )
        steps, previous = [], base
        for method, value in peaks.items():
            if value - previous >= 1:
                steps.append(f"{method} +{value - previous:.0f}")
            previous = value
        print(f"  peak grew at: {', '.join(steps) or 'nothing measurable'}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-first", action="store_true")
    args = parser.parse_args()
    loaded, description = load()
    bench_speed(loaded, description, args.repeats)
    print()
    bench_batch(loaded, max(5, args.repeats // 4))
    if not args.no_first:
        print()
        bench_first_call(loaded)
    if not args.no_memory:
        print()
        bench_memory()


if __name__ == "__main__":
    main()
