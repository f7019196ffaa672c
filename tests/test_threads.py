"""TensorFlow work from napari's worker threads: repeated, alternated, concurrent.

The crash these guard against needs a process in which TensorFlow has not been
imported yet (the first import decides which thread pybind11 remembers), so the
root-cause checks run in fresh subprocesses; the viewer tests then repeat what a user
does in one window.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from napari_leukemia._widgets import selection
from napari_leukemia._widgets.classify_widget import ClassifyWidget
from napari_leukemia._widgets.explain_widget import ExplainWidget
from napari_leukemia.cells import detect_cells
from napari_leukemia.synthetic import make_smear

TIMEOUT = 180_000  # ms


def _run_fresh(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_tensorflow_work_in_a_reused_pool_thread_does_not_crash():
    """napari's workers share one QThreadPool: the thread that imported TensorFlow runs
    the next worker with a new Python thread state (this segfaulted on the 2nd call)."""
    result = _run_fresh(
        """
        from qtpy.QtCore import QThreadPool
        from qtpy.QtWidgets import QApplication
        from superqt.utils import create_worker
        import napari_leukemia as nl

        app = QApplication([])
        QThreadPool.globalInstance().setMaxThreadCount(1)  # every worker: the same thread
        image = nl.make_smear(seed=0).image
        done = []
        for step in range(3):
            worker = create_worker(lambda: nl.classify(image).class_name, _start_thread=False)
            worker.returned.connect(done.append)
            worker.errored.connect(lambda error: done.append(repr(error)))
            worker.start()
            while len(done) <= step:
                app.processEvents()
        print("calls", done)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "calls [" in result.stdout
    calls = result.stdout.split("calls ")[1]
    assert calls.count("'") == 6 and "Error" not in calls, calls


def test_tensorflow_started_from_four_threads_at_once():
    """Four threads explaining before any model is loaded: one import, one load, four maps."""
    result = _run_fresh(
        """
        import threading
        import numpy as np
        import napari_leukemia as nl

        image = nl.make_smear(seed=0).image
        results, errors = [], []
        def work():
            try:
                results.append(nl.explain(image, "gradient"))
            except Exception as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        same = all(np.array_equal(r, results[0]) for r in results)
        print("ok", len(results), "errors", errors, "same", same)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok 4 errors [] same True" in result.stdout, result.stdout + result.stderr[-2000:]


# ------------------------------------------------------------------ in one real viewer
@pytest.fixture
def two_smears(make_napari_viewer):
    """A viewer with two sample smears, each with its detected cells, docked widgets."""
    viewer = make_napari_viewer()
    images = []
    for seed in (0, 1):
        smear = make_smear(seed=seed)
        layer = viewer.add_image(smear.image, name=f"smear {seed}")
        data, kwargs, _ = selection.cells_layer_data(detect_cells(smear.image), layer.name)
        cells = viewer.add_shapes(data, **kwargs)
        selection.select_cell(cells, 0)
        images.append(layer)
    classify = ClassifyWidget(viewer)
    explain = ExplainWidget(viewer)
    viewer.window.add_dock_widget(classify)
    viewer.window.add_dock_widget(explain)
    return viewer, images, classify, explain


def _classify(widget, layer, qtbot):
    widget.image.value = layer
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=TIMEOUT)
    assert widget.call.value.startswith("<b>"), widget.call.value
    return widget.last_record


def _explain(widget, layer, methods, qtbot):
    widget.image.value = layer
    widget.methods.value = methods
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT)


def _maps(viewer, source):
    return sorted(
        lay.name
        for lay in viewer.layers
        if lay.metadata.get("napari_leukemia", {}).get("kind") == "attribution"
        and lay.metadata["napari_leukemia"].get("image_layer") == source
    )


def test_classify_three_times_gives_the_same_call(two_smears, qtbot):
    viewer, (first, _), classify, _ = two_smears
    records = [_classify(classify, first, qtbot) for _ in range(3)]
    assert records[0] == records[1] == records[2]


def test_explain_three_times_with_several_methods(two_smears, qtbot):
    viewer, (first, _), _, explain = two_smears
    methods = ["gradient", "lrp_epsilon", "grad_cam"]
    _explain(explain, first, methods, qtbot)
    names = _maps(viewer, first.name)
    values = {name: viewer.layers[name].data.copy() for name in names}
    assert len(names) == 3, names
    for _ in range(2):
        _explain(explain, first, methods, qtbot)
        assert _maps(viewer, first.name) == names  # replaced in place, not added
        for name in names:
            assert (viewer.layers[name].data == values[name]).all(), name


def test_classify_and_explain_alternate_on_two_images(two_smears, qtbot):
    viewer, images, classify, explain = two_smears
    calls = {}
    for round_ in range(2):
        for layer in images:
            record = _classify(classify, layer, qtbot)
            assert calls.setdefault(layer.name, record) == record, round_
            _explain(explain, layer, ["gradient_x_input", "lrp_z"], qtbot)
            assert len(_maps(viewer, layer.name)) == 2
    assert set(calls) == {"smear 0", "smear 1"}


def test_the_active_cells_layer_of_another_image_is_not_used(two_smears):
    viewer, (first, second), _, _ = two_smears
    viewer.layers.selection.active = viewer.layers[f"cells · {second.name}"]
    cell = selection.selected_cell(viewer, first)
    assert cell.cells_layer.name == f"cells · {first.name}"
