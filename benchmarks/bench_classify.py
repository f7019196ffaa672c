"""Speed of classification with the bundled model, as ratios measured in one run.

Targets: `classify` of the selected cell <= 2.5x one compiled forward pass of the same
prepared input; a whole 224x224 field (detection + all its cells) <= 40 ms. Also
profiles `detect_cells` on the field: where its time goes, by step.

Run: ``python benchmarks/bench_classify.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import median_ms, ratio_ms, real_field  # noqa: E402

from napari_leukemia.cells import detect_cells  # noqa: E402
from napari_leukemia.model.classify import classify, load_model  # noqa: E402
from napari_leukemia.model.inputs import cell_inputs  # noqa: E402


def profile_detection(field, rounds: int = 20) -> None:
    """Where `detect_cells` spends its time: its own steps (inclusive) and the top library
    calls (own time), as shares of the total."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        detect_cells(field)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = max(v[3] for v in stats.values())
    print(f"detect_cells profile: {total * 1e3 / rounds:.1f} ms per run ({rounds} runs)")
    steps = [
        (k, v)
        for k, v in stats.items()
        if os.path.basename(k[0]) in ("cells.py", "_morphology.py")
        and "napari_leukemia" in k[0]
        and k[2] != "detect_cells"
    ]
    for (path, line, name), value in sorted(steps, key=lambda kv: -kv[1][3])[:8]:
        where = f"{os.path.basename(path)}:{line}"
        print(f"  step {100 * value[3] / total:5.1f} %  {name} ({where}, inclusive)")
    calls = sorted(stats.items(), key=lambda kv: -kv[1][2])[:6]
    for (path, line, name), value in calls:
        where = f"{os.path.basename(path)}:{line}" if line else "builtin"
        print(f"  call {100 * value[2] / total:5.1f} %  {name} ({where}, own time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    from napari_leukemia.explain.analyzers import forward_engine

    start = time.perf_counter()
    model = load_model()
    print(
        f"load bundled model: {time.perf_counter() - start:.2f} s (includes importing TensorFlow)"
    )
    field, description = real_field()
    cells = detect_cells(field)
    bbox = cells[0].bbox
    x = cell_inputs(field, [bbox], model.info.input)[0]
    engine = forward_engine(model.keras_model)
    print(f"{description}: {len(cells)} cells; selected cell bbox {bbox}")
    forward, cell, ratio = ratio_ms(
        lambda: engine(x)[1].numpy(), lambda: classify(field, model, bbox=bbox), args.repeats
    )
    print(
        f"classify the selected cell: {cell:.2f} ms = {ratio:.2f}x one compiled forward "
        f"({forward:.2f} ms) (target <= 2.5x) {'ok' if ratio <= 2.5 else 'SLOW'}"
    )
    _, known, known_ratio = ratio_ms(
        lambda: engine(x)[1].numpy(), lambda: classify(field, model, bbox=cells[0]), args.repeats
    )
    print(
        f"  the same cell given as its detected Cell (its mask known, no second detection): "
        f"{known:.2f} ms = {known_ratio:.2f}x {'ok' if known_ratio <= 2.5 else 'SLOW'}"
    )
    eager = median_ms(lambda: model.keras_model(x, training=False).numpy(), args.repeats)
    print(f"  for comparison: the Keras model called eagerly {eager:.2f} ms")
    detect = median_ms(lambda: detect_cells(field), args.repeats)
    whole = median_ms(lambda: classify(field, model), args.repeats)
    print(
        f"classify the whole field (detection + {min(len(cells), 8)} cells): {whole:.1f} ms "
        f"(target <= 40 ms) {'ok' if whole <= 40 else 'SLOW'}; detect_cells alone {detect:.1f} ms"
    )
    profile_detection(field)


if __name__ == "__main__":
    main()
