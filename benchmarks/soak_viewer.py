"""Soak test of one napari window: 50 alternating Classify / Explain clicks.

Runs a real viewer (under Xvfb when there is no display) in a child process, so that a
crash is counted instead of ending the benchmark, and prints the resident memory after
5 and after 50 actions. Targets (issue 9): 0 crashes; RSS after 50 within 10 % of RSS
after 5.

    python benchmarks/soak_viewer.py [--actions 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

CHILD = r"""
import sys, time
import psutil
import napari
from qtpy.QtWidgets import QApplication
from napari_leukemia._widgets import selection
from napari_leukemia._widgets.classify_widget import ClassifyWidget
from napari_leukemia._widgets.explain_widget import ExplainWidget
from napari_leukemia.cells import detect_cells
from napari_leukemia.synthetic import make_smear

actions = int(sys.argv[1])
viewer = napari.Viewer(show=True)
images = []
for seed in (0, 1):
    smear = make_smear(seed=seed)
    layer = viewer.add_image(smear.image, name=f"smear {seed}")
    data, kwargs, _ = selection.cells_layer_data(detect_cells(smear.image), layer.name)
    selection.select_cell(viewer.add_shapes(data, **kwargs), 0)
    images.append(layer)
classify, explain = ClassifyWidget(viewer), ExplainWidget(viewer)
viewer.window.add_dock_widget(classify)
viewer.window.add_dock_widget(explain)
app = QApplication.instance()
methods = [["gradient"], ["lrp_epsilon"], ["grad_cam"], ["gradient_x_input", "lrp_z"]]
process = psutil.Process()

def wait(done):
    while not done():
        app.processEvents()
        time.sleep(0.005)

for i in range(actions):
    layer = images[(i // 2) % 2]
    start = time.perf_counter()
    if i % 2 == 0:
        classify.image.value = layer
        classify.run()
        wait(lambda: classify.run_button.enabled)
    else:
        explain.image.value = layer
        explain.methods.value = methods[(i // 2) % len(methods)]
        explain.run()
        wait(lambda: not explain.running)
    took = time.perf_counter() - start
    print(f"action {i + 1} {'classify' if i % 2 == 0 else 'explain'} "
          f"{took:.3f} s rss {process.memory_info().rss / 2**20:.1f} MiB", flush=True)
print("done", flush=True)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=50)
    args = parser.parse_args(argv)
    command = [sys.executable, "-c", CHILD, str(args.actions)]
    if not os.environ.get("DISPLAY"):
        if shutil.which("xvfb-run") is None:
            print("No display and no xvfb-run: install xvfb (scripts/system-deps.sh).")
            return 1
        command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *command]
    start = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith("action ")]
    rss = {int(line.split()[1]): float(line.split()[-2]) for line in lines}
    times = [float(line.split()[3]) for line in lines]
    crashed = "done" not in child.stdout
    took = time.perf_counter() - start
    print(f"actions completed: {len(lines)} of {args.actions} in {took:.0f} s")
    print(f"crashes: {int(crashed)} (child exit status {child.returncode})")
    if crashed:
        print(child.stderr[-3000:])
    if len(times) > 2:
        first, rest = times[:2], sorted(times[2:])
        print(
            f"first classify / explain: {first[0]:.2f} s / {first[1]:.2f} s; "
            f"later actions median {rest[len(rest) // 2]:.3f} s, max {rest[-1]:.3f} s"
        )
    if 5 in rss and len(lines) in rss:
        growth = rss[len(lines)] / rss[5] - 1
        print(
            f"RSS after 5 actions {rss[5]:.0f} MiB, after {len(lines)}: "
            f"{rss[len(lines)]:.0f} MiB ({100 * growth:+.1f} %; target within ±10 %)"
        )
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
