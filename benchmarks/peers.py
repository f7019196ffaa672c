"""Our attribution engine against iNNvestigate and Xplique: time per map and agreement.

Not part of CI. Each side runs in its own process and environment; they share only
files (weights, inputs, maps) in a work folder:

- iNNvestigate 2.1.2 needs TensorFlow 2.14 with Keras 2 and numpy < 2: a venv with
  ``tensorflow-cpu==2.14.1 innvestigate==2.1.2 "numpy<2"``. It gets a 7-layer 64x64 CNN
  (Conv32-MaxPool-Conv32-MaxPool-Flatten-Dense64-Dense4, seeded random weights, handed
  over as an .npz of layer weights and rebuilt in Keras 2 there).
- Xplique 2.0.2 (Keras 3, no LRP) runs on TensorFlow 2.20: a venv with ``xplique==2.0.2``.
  It gets the bundled model's .keras file and explains its ``logits`` layer.

Both get the same real cell ROIs (64x64, from ../shared/data/all4; synthetic cells when
that is absent). Each side times every map of one input after a warm-up call, per method
(median over rounds of all inputs); ours uses `attribute` on the same prepared inputs.
Maps are compared by Pearson correlation, per input, then averaged.

Each pair is a run of ours (both cases) and, right after it, each peer; `--pairs` of
them (default 3). A ratio is the median over those pairs, so the load of other jobs,
which moves both sides' times by up to 2x between minutes, weighs less than in one run.

Run: ``python benchmarks/peers.py [--envs /tmp/peer_envs] [--rounds 10] [--pairs 3]``.
The venvs are made under --envs (outside the project) on the first run, with pip from
PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENVS = {
    "innvestigate": ["tensorflow-cpu==2.14.1", "innvestigate==2.1.2", "numpy<2"],
    "xplique": ["tensorflow==2.20.*", "xplique==2.0.2"],
}
#: Our method id -> (peer name, peer method, its options), for the methods both have.
INNVESTIGATE = {
    "gradient": ("gradient", {"postprocess": None}),
    "gradient_x_input": ("input_t_gradient", {}),
    "lrp_z": ("lrp.z", {}),
    "lrp_epsilon": ("lrp.epsilon", {"epsilon": 0.1}),
    "lrp_alpha_beta": ("lrp.alpha_1_beta_0", {}),
    "deep_taylor": ("deep_taylor.bounded", {"low": 0.0, "high": 1.0}),
}
XPLIQUE = {
    "abs_gradient": ("Saliency", {"reducer": "sum"}),
    "gradient_x_input": ("GradientInput", {}),
    "integrated_gradients": ("IntegratedGradients", {"steps": 33, "reducer": "sum"}),
    "smoothgrad": ("SmoothGrad", {"nb_samples": 32, "reducer": "sum"}),
    "grad_cam": ("GradCAM", {"conv_layer": "relu5"}),
    "grad_cam_pp": ("GradCAMPP", {"conv_layer": "relu5"}),
    "occlusion": ("Occlusion", {"patch_size": 8, "patch_stride": 4, "occlusion_value": 0.0}),
}
#: Our parameters matching the peers' (window 8 / stride 4 / fill 0 for occlusion, ...).
OUR_PARAMS = {
    "lrp_epsilon": {"epsilon": 0.1},
    "deep_taylor": {"low": 0.0, "high": 1.0},
    "integrated_gradients": {"steps": 32},
    "smoothgrad": {"samples": 32, "noise": 0.15},
    "occlusion": {"window": 8, "stride": 4, "fill": 0.0},
}
#: Methods whose maps are not defined identically on both sides (noise draws, reductions).
DIFFERENT = {
    "smoothgrad": "different noise draws",
    "occlusion": "peer sums the drops of the windows covering a pixel, we average them",
}


def ensure_env(root: Path, name: str) -> Path:
    """The peer venv's python, made (pip install from PyPI) when missing."""
    python = root / name / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {root / name} (pip install {' '.join(ENVS[name])}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / name)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *ENVS[name]], check=True, timeout=3600
    )
    return python


# ------------------------------------------------------------------------ our side
def make_case(work: Path) -> None:
    """Write the shared case: small-CNN weights, the bundled model, real cell inputs."""
    from napari_leukemia.cells import detect_cells
    from napari_leukemia.images import read_image
    from napari_leukemia.model.backend import keras_module
    from napari_leukemia.model.classify import bundled_model_path, load_model
    from napari_leukemia.model.inputs import cell_inputs
    from napari_leukemia.synthetic import make_smear

    keras = keras_module()
    keras.utils.set_random_seed(0)
    small = small_cnn(keras)
    np.savez(work / "small_weights.npz", *small.get_weights())
    loaded = load_model()
    data = HERE.parent.parent / "shared" / "data" / "all4"
    files = sorted(data.glob("*/*.jpg"))[::50] if data.is_dir() else []
    rois = []
    for i in range(100):
        field = read_image(files[i]) if i < len(files) else make_smear(seed=i).image
        cells = detect_cells(field)
        if cells:
            rois.append(cell_inputs(field, [cells[0].bbox], loaded.info.input)[0][0])
        if len(rois) == 5:
            break
    np.save(work / "inputs.npy", np.stack(rois).astype(np.float32))
    (work / "bundled.txt").write_text(str(bundled_model_path()))


def small_cnn(keras):
    """The 7-layer 64x64 CNN both sides build (ReLU, max pooling, linear logits)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(4, name="logits"),
        ]
    )


def run_ours(work: Path, rounds: int) -> None:
    """Time our maps of both cases; write ours_<case>.json / .npz."""
    import time

    from napari_leukemia.explain import attribute
    from napari_leukemia.model.backend import keras_module
    from napari_leukemia.model.classify import load_model

    keras = keras_module()
    x = np.load(work / "inputs.npy")
    small = small_cnn(keras)
    weights = np.load(work / "small_weights.npz")
    small.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    cases = {"innvestigate": (small, INNVESTIGATE), "xplique": (load_model().keras_model, XPLIQUE)}
    for case, (model, table) in cases.items():
        targets = [int(t) for t in attribute(model, x, "gradient")[2]]
        times, maps = {}, {}
        for method in table:
            params = OUR_PARAMS.get(method, {})
            one = [
                attribute(model, x[i], method, targets[i], **params)[0][0] for i in range(len(x))
            ]
            per_round = []
            for _ in range(rounds):
                start = time.perf_counter()
                for i in range(len(x)):
                    attribute(model, x[i], method, targets[i], **params)
                per_round.append((time.perf_counter() - start) / len(x))
            times[method] = float(np.median(per_round))
            maps[method] = np.stack(one)
        path = work / f"ours_{case}.json"
        path.write_text(json.dumps({"times": times, "targets": targets}))
        np.savez(work / f"ours_{case}.npz", **maps)


# ------------------------------------------------------------------------ peer sides
_INNVESTIGATE_SIDE = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
import innvestigate
from tensorflow import keras
work, rounds = sys.argv[1], int(sys.argv[2])
table = json.loads(sys.argv[3])
L = keras.layers
model = keras.Sequential([
    keras.Input((64, 64, 3)),
    L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
    L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
    L.Flatten(), L.Dense(64, activation="relu"), L.Dense(4),
])
weights = np.load(f"{work}/small_weights.npz")
model.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
x = np.load(f"{work}/inputs.npy")
targets = json.load(open(f"{work}/ours_innvestigate.json"))["targets"]
times, maps = {}, {}
for ours, (name, options) in table.items():
    analyzer = innvestigate.create_analyzer(name, model, neuron_selection_mode="index", **options)
    one = [analyzer.analyze(x[i:i + 1], neuron_selection=targets[i])[0].sum(-1)
           for i in range(len(x))]
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(len(x)):
            analyzer.analyze(x[i:i + 1], neuron_selection=targets[i])
        per_round.append((time.perf_counter() - start) / len(x))
    times[ours] = float(np.median(per_round))
    maps[ours] = np.stack(one)
from importlib.metadata import version
json.dump({"times": times, "version": version("innvestigate"), "tf": tf.__version__},
          open(f"{work}/peer_innvestigate.json", "w"))
np.savez(f"{work}/peer_innvestigate.npz", **maps)
"""

_XPLIQUE_SIDE = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
import keras
import xplique
from xplique import attributions as A
work, rounds = sys.argv[1], int(sys.argv[2])
table = json.loads(sys.argv[3])
full = keras.saving.load_model(open(f"{work}/bundled.txt").read().strip(), compile=False)
model = keras.Model(full.inputs, full.get_layer("logits").output)
x = np.load(f"{work}/inputs.npy")
targets = json.load(open(f"{work}/ours_xplique.json"))["targets"]
onehot = np.eye(4, dtype=np.float32)[targets]
times, maps = {}, {}
for ours, (name, options) in table.items():
    options = dict(options)
    if name == "SmoothGrad":
        options["noise"] = 0.15 * float(x.max() - x.min())
    explainer = getattr(A, name)(model, **options)
    one = [np.asarray(explainer.explain(x[i:i + 1], onehot[i:i + 1]))[0] for i in range(len(x))]
    one = [m.sum(-1) if m.ndim == 3 else m for m in one]
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(len(x)):
            np.asarray(explainer.explain(x[i:i + 1], onehot[i:i + 1]))
        per_round.append((time.perf_counter() - start) / len(x))
    times[ours] = float(np.median(per_round))
    maps[ours] = np.stack(one)
json.dump({"times": times, "version": xplique.__version__, "tf": tf.__version__},
          open(f"{work}/peer_xplique.json", "w"))
np.savez(f"{work}/peer_xplique.npz", **maps)
"""


def run_peer(python: Path, case: str, code: str, table: dict, work: Path, rounds: int) -> None:
    script = work / f"{case}_side.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(python), str(script), str(work), str(rounds), json.dumps(table)],
        check=True,
        env=env,
        cwd=str(work),
    )


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def report(work: Path, case: str, table: dict, runs: list[dict]) -> None:
    """Print one table: times of the last run, ratios as the median over all runs."""
    ours, peer = runs[-1]["ours"], runs[-1]["peer"]
    our_maps, peer_maps = np.load(work / f"ours_{case}.npz"), np.load(work / f"peer_{case}.npz")
    print(f"\n{case} {peer['version']} (TensorFlow {peer['tf']}) vs ours:")
    head = f"{'ours ms':>8s} {'peer ms':>8s} {'ours/peer':>9s} {'range':>11s} {'corr':>6s}"
    print(f"  {'method':22s} {'peer':20s} {head}")
    for method, (name, _) in table.items():
        corr = np.mean(
            [correlation(a, b) for a, b in zip(our_maps[method], peer_maps[method], strict=True)]
        )
        ratios = [r["ours"]["times"][method] / r["peer"]["times"][method] for r in runs]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        note = f"  ({DIFFERENT[method]})" if method in DIFFERENT else ""
        print(
            f"  {method:22s} {name:20s} {1e3 * ours['times'][method]:8.2f} "
            f"{1e3 * peer['times'][method]:8.2f} {np.median(ratios):9.2f} {spread:>11s} "
            f"{corr:6.3f}{note}"
        )


def _times(work: Path, case: str, side: str) -> dict:
    return json.loads((work / f"{side}_{case}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=Path, default=Path(tempfile.gettempdir()) / "peer_envs")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--pairs", type=int, default=3,
        help="back-to-back runs of ours and each peer; ratios are their median",
    )  # fmt: skip
    parser.add_argument("--side", choices=["ours"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "ours":
        if not (args.work / "inputs.npy").exists():
            make_case(args.work)
        run_ours(args.work, args.rounds)
        return
    pythons = {name: ensure_env(args.envs, name) for name in ENVS}
    cases = {
        "innvestigate": (_INNVESTIGATE_SIDE, INNVESTIGATE),
        "xplique": (_XPLIQUE_SIDE, XPLIQUE),
    }
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="peers-") as folder:
        work = Path(folder)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        ours_cmd = [sys.executable, __file__, "--side", "ours", "--work", str(work),
                    "--rounds", str(args.rounds)]  # fmt: skip
        for _ in range(args.pairs):  # ours (both cases), then each peer right after
            subprocess.run(ours_cmd, check=True, env=env)
            for case, (code, table) in cases.items():
                run_peer(pythons[case], case, code, table, work, args.rounds)
                runs[case].append({side: _times(work, case, side) for side in ("ours", "peer")})
        print(f"time per map of one 64x64 input, median of {args.rounds} rounds of 5 real "
              f"cells; ours/peer: the median of {args.pairs} back-to-back pairs of runs "
              "(range: lowest-highest pair)")  # fmt: skip
        for case, (_, table) in cases.items():
            report(work, case, table, runs[case])


if __name__ == "__main__":
    main()
