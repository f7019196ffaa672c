"""The Batch widget and the store in napari: real batch runs (one Dask worker process),
real viewers, real clicks on the results table.

The store-wide fixture runs `run_batch` once for the reader tests; the widget test runs
its own batch from the widget (Run twice: the second run skips what the first wrote).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import fsspec
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from qtpy.QtCore import Qt

import napari_leukemia as nl
from napari_leukemia import layer_metadata
from napari_leukemia._widgets import selection
from napari_leukemia._widgets.batch_widget import DOCK_NAME, BatchWidget
from napari_leukemia._widgets.explain_widget import POSITIVE_COLORMAP
from napari_leukemia.batch import run_batch
from napari_leukemia.batch.reader import ROLE, napari_get_reader, read_store, store_of
from napari_leukemia.batch.store import BatchStore, StoreError
from napari_leukemia.batch.tables import read_table
from tests.test_widgets import click

SEEDS = (0, 1)
RUN_TIMEOUT_MS = 300_000  # a cold worker process imports TensorFlow and loads the model


@pytest.fixture(scope="module")
def smear_folder(tmp_path_factory):
    """Two synthetic smears as PNG files in a folder."""
    folder = tmp_path_factory.mktemp("smears")
    for seed in SEEDS:
        Image.fromarray(nl.make_smear(seed=seed).image).save(folder / f"smear{seed}.png")
    return folder


@pytest.fixture(scope="module")
def batch_store(smear_folder, tmp_path_factory):
    """A store written by `run_batch` with one worker process."""
    out = tmp_path_factory.mktemp("store") / "study.zarr"
    run_batch([smear_folder], out, methods=["grad_cam"], workers=1, progress=False)
    return out


def _widget(make_napari_viewer, folder, out):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Batch")
    widget.folder.value = folder
    widget.out.value = out
    widget.workers.value = 1
    widget.methods.value = ["grad_cam"]
    return viewer, widget


def _run(qtbot, widget):
    widget.run()
    assert widget.worker is not None, widget.status.value
    with qtbot.waitSignal(widget.worker.finished, timeout=RUN_TIMEOUT_MS):
        pass
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=5000)


def _click_row(qtbot, table, row: int) -> None:
    native = table.native
    native.scrollToItem(native.item(row, 0))
    qtbot.waitUntil(lambda: native.visualItemRect(native.item(row, 0)).height() > 0)
    centre = native.visualItemRect(native.item(row, 0)).center()
    qtbot.mouseClick(native.viewport(), Qt.MouseButton.LeftButton, pos=centre)


def test_widget_runs_twice_then_a_clicked_row_opens_the_cell_from_the_store(
    make_napari_viewer, qtbot, smear_folder, tmp_path
):
    out = tmp_path / "study.zarr"
    viewer, widget = _widget(make_napari_viewer, smear_folder, out)
    _run(qtbot, widget)
    report = widget.last_report
    assert report is not None, widget.status.value
    assert (report.analysed, report.skipped, report.failed) == (2, 0, 0), widget.status.value
    qtbot.waitUntil(lambda: widget.progress.value == 2 and widget.progress.max == 2)
    detected = {f"smear{s}": len(nl.detect_cells(nl.make_smear(seed=s).image)) for s in SEEDS}
    assert report.cells == sum(detected.values())

    _run(qtbot, widget)  # again into the same store: nothing to redo
    report = widget.last_report
    assert (report.analysed, report.skipped, report.failed) == (0, 2, 0), widget.status.value
    assert "2 already in the store" in widget.status.value

    # the results dock lists the store's images and cells
    assert DOCK_NAME in viewer.window.dock_widgets
    images, cells = widget.results.frames["images"], widget.results.frames["cells"]
    assert sorted(images["image"]) == ["smear0", "smear1"]
    assert images.set_index("image")["cells"].to_dict() == detected
    stored = _store_cells(out)
    assert len(cells) == len(stored) == sum(detected.values())

    user_layer = viewer.add_image(np.zeros((8, 8)), name="smear1")  # the user's own layer
    row = int(np.flatnonzero((cells["image"] == "smear1") & (cells["cell"] == 2))[0])
    _click_row(qtbot, widget.results.cells, row)
    chosen = selection.selected_cell(viewer)
    assert chosen is not None and chosen.cell_id == 2
    assert store_of(chosen.image_layer) == (str(out), "smear1")
    np.testing.assert_array_equal(
        np.asarray(chosen.image_layer.data[0]), nl.make_smear(seed=1).image
    )
    expected = stored[(stored["image"] == "smear1") & (stored["cell"] == 2)].iloc[0]
    assert chosen.bbox == tuple(int(expected[k]) for k in ("min_row", "min_col", "max_row",
                                                           "max_col"))  # fmt: skip
    maps = [lay for lay in viewer.layers if layer_metadata.read(lay).get(ROLE) == "map"]
    assert len(maps) == 1 and maps[0].colormap.name == POSITIVE_COLORMAP.name
    assert viewer.dims.current_step[0] == 1  # the map of cell 2 is shown

    # another image replaces the store layers, never the user's layer of the same name
    before = {lay.name for lay in viewer.layers if store_of(lay)}
    _click_row(qtbot, widget.results.images, list(images["image"]).index("smear0"))
    after = {lay.name for lay in viewer.layers if store_of(lay)}
    assert user_layer in viewer.layers
    assert "smear1 [1]" in before and all(name.startswith("smear1") for name in before)
    assert after and all(name.startswith("smear0") for name in after)
    assert selection.selected_cell(viewer).cell_id == 1


def test_stop_ends_the_run_and_leaves_a_store_that_resumes(
    make_napari_viewer, qtbot, smear_folder, tmp_path
):
    out = tmp_path / "stopped.zarr"
    viewer, widget = _widget(make_napari_viewer, smear_folder, out)
    widget.run()
    widget.stop()  # before the first image: the run stops at its first progress report
    with qtbot.waitSignal(widget.worker.finished, timeout=RUN_TIMEOUT_MS):
        pass
    assert widget.last_report is None
    assert widget.status.value.startswith("Stopped."), widget.status.value
    assert BatchStore.finished(out) == set()
    assert widget.run_button.enabled and not widget.stop_button.enabled


def test_store_opened_with_the_reader_fills_the_batch_dock(make_napari_viewer, qtbot, batch_store):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.open(str(batch_store), plugin="napari-leukemia")
    assert widget.store == batch_store.resolve()
    assert DOCK_NAME in viewer.window.dock_widgets
    assert len(widget.results.frames["cells"]) == len(_store_cells(batch_store))
    cells_layer = next(lay for lay in viewer.layers if selection.is_cells_layer(lay))
    assert layer_metadata.image_layer_of(cells_layer) == "smear0"
    # a click on a cell of the canvas selects it (the plugin's selection mechanics)
    bbox = cells_layer.features.iloc[-1][["min_row", "min_col", "max_row", "max_col"]]
    centre = ((bbox.iloc[0] + bbox.iloc[2]) / 2, (bbox.iloc[1] + bbox.iloc[3]) / 2)
    click(viewer.layers["smear0"], centre)
    assert selection.selected_cell(viewer).cell_id == int(cells_layer.features["cell"].iloc[-1])


def _store_cells(store) -> pd.DataFrame:
    return read_table(fsspec.filesystem("file"), str(store / "tables" / "cells.parquet"))


def test_reader_maps_use_the_explain_colormaps(batch_store):
    layers = {kw["name"]: kw for _, kw, _ in read_store(batch_store, "smear1")}
    assert layers["smear1 Grad-CAM"]["colormap"] is POSITIVE_COLORMAP
    stand_ins = [SimpleNamespace(metadata=kw["metadata"]) for kw in layers.values()]
    assert all(store_of(layer) == (str(batch_store), "smear1") for layer in stand_ins)


def test_damaged_store_gives_a_clear_error_in_the_widget_and_the_reader(
    make_napari_viewer, qtbot, smear_folder, tmp_path
):
    out = tmp_path / "damaged.zarr"
    out.mkdir()
    (out / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    for call in (lambda: BatchStore.finished(out), lambda: BatchStore.attach(str(out)),
                 lambda: read_store(out)):  # fmt: skip
        with pytest.raises(StoreError, match="not a readable batch store"):
            call()
    assert napari_get_reader(str(out)) is read_store  # says "damaged", not "no reader"
    viewer, widget = _widget(make_napari_viewer, smear_folder, out)
    _run(qtbot, widget)
    assert widget.status.value.startswith("Failed:")
    assert "not a readable batch store" in widget.status.value
    assert "Traceback" not in widget.status.value
    assert "tick 'replace a store of other settings'" in widget.status.value  # not --overwrite
    assert sorted(p.name for p in out.iterdir()) == ["zarr.json"]  # nothing written
    assert not widget.open_store(out)
    assert "not a readable batch store" in widget.status.value


def test_store_under_a_file_is_refused_before_any_work(smear_folder, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        run_batch([smear_folder], blocker / "study.zarr", workers=1, progress=False)
    assert blocker.read_text() == "not a folder"


def test_store_on_a_read_only_file_system_is_refused_before_any_work(smear_folder, tmpfs):
    """A read-only mount stops root too (whom the chmod test below cannot stop)."""
    folder = tmpfs("read_only_disk", 1, read_only=True)
    with pytest.raises(StoreError, match="read-only"):
        run_batch([smear_folder], folder / "study.zarr", workers=1, progress=False)
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into read-only folders; the read-only mount test covers root",
)
def test_store_in_a_read_only_folder_is_refused_before_any_work(smear_folder, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="read-only"):
            run_batch([smear_folder], folder / "study.zarr", workers=1, progress=False)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)
