"""`napari-leukemia explain` and `batch`: real model, real files, real Dask processes.

The batch tests share one Dask cluster started as subprocesses once per module
(``dask scheduler`` + two ``dask worker`` processes on localhost; each worker loads
TensorFlow and the model once) and reach it through ``--scheduler``. The test named
``test_subprocess_*`` interrupts a CLI run that starts its own LocalCluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import napari_leukemia as nl
from napari_leukemia.batch import InputError, collect_inputs, run_batch
from napari_leukemia.batch.store import StoreError, file_sha256
from napari_leukemia.cli import main
from napari_leukemia.images import read_image
from napari_leukemia.model.classify import bundled_model_path

METHODS = ["grad_cam", "lrp_epsilon"]
SEEDS = (0, 1, 2)
DASK = Path(sys.executable).with_name("dask")


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> dict:
    """Three synthetic smears as PNG files, their exact labels in another folder, and
    one corrupt PNG among the images."""
    root = tmp_path_factory.mktemp("smears")
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    arrays = {}
    for seed in SEEDS:
        smear = nl.make_smear(seed=seed)
        Image.fromarray(smear.image).save(images / f"smear{seed}.png")
        nl.save_labels(labels / f"smear{seed}_labels.png", smear.labels)
        arrays[f"smear{seed}"] = smear
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return {"images": images, "labels": labels, "arrays": arrays}


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """``dask scheduler`` and two single-threaded ``dask worker`` processes started as
    subprocesses on localhost, as a user would start a cluster; yields its address."""
    from distributed import Client

    info = tmp_path_factory.mktemp("cluster") / "scheduler.json"
    processes = [_start([str(DASK), "scheduler", "--scheduler-file", str(info), "--port", "0",
                         "--no-dashboard"])]  # fmt: skip
    try:
        _wait_for(info.exists, 60, "the scheduler file")
        for _ in range(2):
            processes.append(_start([str(DASK), "worker", "--scheduler-file", str(info),
                                     "--nthreads", "1", "--no-dashboard"]))  # fmt: skip
        address = json.loads(info.read_text())["address"]
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def full_store(smears, scheduler, tmp_path_factory):
    """One batch run over the smears (with labels) and its report."""
    out = tmp_path_factory.mktemp("runs") / "study.zarr"
    report = run_batch(
        [smears["images"]], out, methods=METHODS, labels_dir=smears["labels"],
        scheduler=scheduler, progress=False,
    )  # fmt: skip
    return out, report


def _tree_state(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------ explain CLI


def test_cli_explain_writes_map_figure_and_record_and_never_overwrites(smears, tmp_path):
    image_path = smears["images"] / "smear0.png"
    image = read_image(image_path)
    cells = nl.detect_cells(image)
    out = tmp_path / "maps"
    assert main(["explain", str(image_path), "--method", "grad_cam", "--cell", "1",
                 "--out", str(out)]) == 0  # fmt: skip

    saved = np.load(out / "smear0_cell1_grad_cam.npy")
    expected = nl.explain_full(image, "grad_cam", bbox=cells[0].bbox)
    assert saved.shape == image.shape[:2]
    np.testing.assert_allclose(saved, expected.map, rtol=1e-5, atol=1e-6 * np.abs(saved).max())
    record = json.loads((out / "smear0_cell1_grad_cam.json").read_text())
    assert record["bbox"] == list(cells[0].bbox)
    assert record["target_name"] == expected.target_name
    assert record["params"] == expected.params
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    with Image.open(out / "smear0_cell1_grad_cam.png") as png:
        assert png.mode == "RGB" and png.width > 400

    before = _tree_state(out)
    code = main(["explain", str(image_path), "--method", "lrp_epsilon,grad_cam", "--cell",
                 "1", "--out", str(out)])  # fmt: skip
    assert code == 2
    assert _tree_state(out) == before  # nothing replaced, and no lrp_epsilon file either


def test_cli_explain_bad_cell_and_method(smears, tmp_path, capsys):
    image_path = str(smears["images"] / "smear0.png")
    assert main(["explain", image_path, "--method", "grad_cam", "--cell", "99",
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "--cell 99 does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", image_path, "--method", "grad_kam", "--out", str(tmp_path)])
    assert "unknown method(s) grad_kam" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------ inputs


def test_inputs_folders_globs_and_lists(smears, tmp_path):
    images = smears["images"]
    listing = tmp_path / "paths.txt"
    listing.write_text(f"# two of them\n{images / 'smear1.png'}\n\n{images / 'smear0.png'}\n")
    assert collect_inputs([listing]) == [images / "smear1.png", images / "smear0.png"]
    assert len(collect_inputs([images])) == 4
    assert collect_inputs([str(images / "smear[01].png"), images / "smear0.png"]) == [
        images / "smear0.png",
        images / "smear1.png",
    ]
    with pytest.raises(InputError, match="matches no file"):
        collect_inputs([str(tmp_path / "*.tif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image"):
        collect_inputs([tmp_path / "empty"])
    with pytest.raises(InputError, match="No INPUT"):
        collect_inputs([])


# ------------------------------------------------------------------------ batch


def test_batch_store_is_ome_zarr_with_cells_maps_labels_and_tables(smears, full_store):
    import zarr

    out, report = full_store
    assert (report.analysed, report.skipped, report.failed) == (3, 0, 1)
    root = zarr.open_group(out, mode="r")
    assert root.metadata.zarr_format == 3
    run = root.attrs["napari_leukemia"]
    assert run["model_sha256"] == file_sha256(bundled_model_path())
    assert run["methods"] == METHODS and "numpy" in run["versions"]

    for name, smear in smears["arrays"].items():
        group = root["images"][name]
        assert group.attrs["ome"]["version"] == "0.5"
        assert len(group.attrs["ome"]["multiscales"][0]["datasets"]) >= 2  # a pyramid
        np.testing.assert_array_equal(np.moveaxis(group["s0"][:], 0, -1), smear.image)
        cells = nl.detect_cells(smear.image)
        expected_cells = nl.cells_to_labels(cells, smear.image.shape)
        np.testing.assert_array_equal(group["labels/cells/s0"][:], expected_cells)
        np.testing.assert_array_equal(group["labels/morphology/s0"][:], smear.labels)
        assert group["labels"].attrs["ome"]["labels"] == ["cells", "morphology"]
        for method in METHODS:
            assert group[f"maps/{method}"].shape == (len(cells), *smear.image.shape[:2])

    summary = pd.read_parquet(out / "tables" / "summary.parquet")
    cells_table = pd.read_parquet(out / "tables" / "cells.parquet")
    n_cells = sum(len(nl.detect_cells(s.image)) for s in smears["arrays"].values())
    assert len(cells_table) == n_cells == report.cells
    probs = cells_table[[c for c in cells_table if c.startswith("P(") and c != "P(malignant)"]]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # one row per cell x method x label present in the cell's ROI
    assert set(summary["method"]) == set(METHODS)
    per_map = summary.groupby(["image", "cell", "method"])["relevant_fraction"].sum()
    assert len(per_map) == n_cells * len(METHODS)
    np.testing.assert_allclose(per_map, 1.0, atol=1e-9)
    errors = pd.read_parquet(out / "tables" / "errors.parquet")
    assert errors["image"].tolist() == ["corrupt"]
    assert "could not be read" in errors["error"].iloc[0]


def test_batch_quantification_matches_the_core_api(smears, full_store):
    out, _ = full_store
    summary = pd.read_parquet(out / "tables" / "summary.parquet")
    smear = smears["arrays"]["smear1"]
    cell = nl.detect_cells(smear.image)[0]
    explanation = nl.explain_full(smear.image, "lrp_epsilon", bbox=cell.bbox)
    expected = nl.quantify(explanation.input_map, smear.labels, transform=explanation.transform)
    rows = summary[(summary.image == "smear1") & (summary.cell == 1)]
    rows = rows[rows.method == "lrp_epsilon"].set_index("label")
    assert sorted(rows.index) == sorted(expected["label"])
    np.testing.assert_allclose(
        rows.loc[expected["label"], "relevance_mass"], expected["relevance_mass"], atol=1e-5
    )


def test_batch_resumes_skips_finished_and_redoes_half_written(smears, scheduler, tmp_path):
    import zarr

    out = tmp_path / "resume.zarr"
    args = dict(methods=["grad_cam"], scheduler=scheduler, progress=False)
    first = run_batch([smears["images"]], out, **args)
    assert (first.analysed, first.failed) == (3, 1)
    finished = _tree_state(out / "images")

    again = run_batch([smears["images"]], out, **args)
    assert (again.analysed, again.skipped, again.failed) == (0, 3, 1)
    assert _tree_state(out / "images") == finished  # nothing rewritten

    # what an interrupted write leaves: an image group without the completion mark
    group = zarr.open_group(out / "images" / "smear2", mode="a")
    group.attrs["napari_leukemia"] = {"source": "x", "complete": False}
    third = run_batch([smears["images"]], out, **args)
    assert (third.analysed, third.skipped) == (1, 2)
    assert "removed 1 half-written" in third.notes[0]
    assert zarr.open_group(out / "images" / "smear2").attrs["napari_leukemia"]["complete"]


def test_batch_refuses_a_store_of_other_settings(smears, scheduler, tmp_path):
    out = tmp_path / "settings.zarr"
    inputs = [smears["images"] / "smear0.png"]
    run_batch(inputs, out, methods=["grad_cam"], scheduler=scheduler, progress=False)
    before = _tree_state(out)
    with pytest.raises(StoreError, match="other settings.*methods"):
        run_batch(inputs, out, methods=["lrp_epsilon"], scheduler=scheduler, progress=False)
    assert _tree_state(out) == before
    replaced = run_batch(
        inputs, out, methods=["lrp_epsilon"], scheduler=scheduler, progress=False,
        overwrite=True,
    )  # fmt: skip
    assert replaced.analysed == 1
    assert (out / "images" / "smear0" / "maps" / "lrp_epsilon").is_dir()
    assert not (out / "images" / "smear0" / "maps" / "grad_cam").exists()


def test_batch_refuses_another_max_pixels_and_reads_older_stores_as_the_default(
    smears, scheduler, tmp_path
):
    import zarr

    from napari_leukemia.tiles import LARGE_PIXELS

    out = tmp_path / "pixels.zarr"
    inputs = [smears["images"] / "smear0.png"]
    args = dict(methods=["grad_cam"], scheduler=scheduler, progress=False)
    run_batch(inputs, out, **args)
    root = zarr.open_group(out, mode="a")
    assert root.attrs["napari_leukemia"]["max_pixels"] == LARGE_PIXELS
    with pytest.raises(StoreError, match="max_pixels: store 16777216, now 1000"):
        run_batch(inputs, out, max_pixels=1000, **args)
    # a store written before max_pixels was recorded ran with the default
    run = dict(root.attrs["napari_leukemia"])
    del run["max_pixels"]
    root.attrs["napari_leukemia"] = run
    assert run_batch(inputs, out, **args).skipped == 1
    with pytest.raises(StoreError, match="max_pixels: store 16777216, now None"):
        run_batch(inputs, out, max_pixels=None, **args)


def test_an_image_whose_full_size_maps_would_not_fit_keeps_them_per_cell(
    smears, tmp_path, monkeypatch
):
    """Past `FULL_MAPS_MAX_BYTES` an image's maps are kept on the model input, as for a
    whole slide: the same cells and calls, and maps that paste back onto the image's
    full-size maps; the reader shows them on the image."""
    from napari_leukemia.batch import analysis
    from napari_leukemia.batch.analysis import Job, analyse, full_maps_bytes, write_result
    from napari_leukemia.batch.reader import read_store
    from napari_leukemia.batch.store import BatchStore
    from napari_leukemia.explain.api import map_to_image
    from napari_leukemia.explain.methods import resolve_params
    from napari_leukemia.roi import RoiTransform

    assert full_maps_bytes(155, (2048, 2048), ["grad_cam"]) > analysis.FULL_MAPS_MAX_BYTES
    params = {m: resolve_params(m, {}) for m in METHODS}
    job = Job(str(smears["images"] / "smear1.png"), "smear1", tuple(METHODS), params)
    full = analyse(job)
    monkeypatch.setattr(analysis, "FULL_MAPS_MAX_BYTES", 0)
    per_cell = analyse(job)
    assert "whole_slide" not in full and per_cell["whole_slide"]
    columns = ["cell", "min_row", "min_col", "max_row", "max_col", "class"]
    pd.testing.assert_frame_equal(per_cell["cells"][columns], full["cells"][columns])
    probabilities = [c for c in full["cells"].columns if c.startswith("P(")]
    np.testing.assert_allclose(
        per_cell["cells"][probabilities], full["cells"][probabilities], rtol=1e-5
    )  # the same inputs, batched in other groups
    for method in METHODS:
        for i, transform in enumerate(per_cell["transforms"]):
            pasted = map_to_image(per_cell["maps"][method][i], RoiTransform(**transform))
            scale = np.abs(full["maps"][method][i]).max()
            np.testing.assert_allclose(pasted, full["maps"][method][i], rtol=1e-4,
                                       atol=1e-5 * scale)  # fmt: skip
    store = BatchStore.open(tmp_path / "cells.zarr", {"format": 1, "test": True})
    write_result(store, per_cell)
    layers = {meta["name"]: (data, meta) for data, meta, _ in
              read_store(tmp_path / "cells.zarr", "smear1")}  # fmt: skip
    maps = [name for name in layers if "Grad-CAM" in name]
    assert maps, sorted(layers)


def test_a_full_disk_stops_the_run_with_a_message_and_the_store_resumes(
    smears, scheduler, tmp_path, tmpfs
):
    """The store's disk fills up during a run: the run stops with a message that says
    what is kept and what to do, the images marked complete read back whole, and the
    same command after freeing space finishes the store."""
    import zarr

    disk = tmpfs("disk", 64)
    images = tmp_path / "fields"
    images.mkdir()
    for k in range(6):
        (images / f"field{k}.png").write_bytes((smears["images"] / "smear1.png").read_bytes())
    args = dict(methods=METHODS, scheduler=scheduler, progress=False)
    reference = run_batch([images], disk / "reference.zarr", **args)
    used = sum(p.stat().st_blocks * 512 for p in (disk / "reference.zarr").rglob("*"))
    subprocess.run(["rm", "-r", str(disk / "reference.zarr")], check=True)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as handle:  # leave room for about half of the store
        handle.truncate(0)
        handle.write(b"\0" * (free - used // 2))
    out = disk / "study.zarr"
    with pytest.raises(StoreError, match="disk holding the store is full") as error:
        run_batch([images], out, **args)
    assert "run the same command again" in str(error.value)
    complete = [name for name, group in zarr.open_group(out / "images").groups()
                if group.attrs.get("napari_leukemia", {}).get("complete")]  # fmt: skip
    assert 0 < len(complete) < 6
    for name in complete:  # what is marked complete reads back whole
        cells = pd.read_parquet(out / "images" / name / "tables" / "cells.parquet")
        assert len(cells) == reference.cells // 6
        assert np.asarray(zarr.open_array(out / "images" / name / "maps" /
                                          "lrp_epsilon")).any()  # fmt: skip
    filler.unlink()
    resumed = run_batch([images], out, **args)
    assert (resumed.skipped, resumed.analysed, resumed.failed) == (
        len(complete), 6 - len(complete), 0)  # fmt: skip
    assert len(resumed.tables["cells"]) == reference.cells
    assert not list(out.rglob("*.partial"))


def test_batch_leaves_foreign_folders_and_bad_labels_alone(smears, scheduler, tmp_path):
    inputs = [smears["images"] / "smear0.png"]
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a napari-leukemia store"):
        run_batch(inputs, folder, scheduler=scheduler, progress=False)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    with pytest.raises(ValueError, match="No label file .* matches"):
        run_batch(inputs, tmp_path / "s.zarr", labels_dir=tmp_path, scheduler=scheduler)
    with pytest.raises(ValueError, match="No label file .* matches"):  # not the image itself
        run_batch(inputs, tmp_path / "s.zarr", labels_dir=inputs[0].parent, scheduler=scheduler)
    assert not (tmp_path / "s.zarr").exists()


def test_batch_into_a_memory_store(smears, scheduler):
    import fsspec

    url = f"memory://batch-test-{os.getpid()}"
    report = run_batch([smears["images"] / "smear2.png"], url, scheduler=scheduler, progress=False)
    fs, root = fsspec.core.url_to_fs(url)
    with fs.open(f"{root}/tables/summary.parquet", "rb") as handle:
        summary = pd.read_parquet(handle)
    assert len(summary) == report.cells == len(nl.detect_cells(smears["arrays"]["smear2"].image))
    assert fs.exists(f"{root}/images/smear2/labels/cells/zarr.json")
    fs.rm(root, recursive=True)


def test_batch_unreachable_scheduler_fails_fast_and_writes_nothing(smears, tmp_path, capsys):
    start = time.perf_counter()
    code = main(["batch", str(smears["images"]), "--out", str(tmp_path / "s.zarr"),
                 "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1",
                 "--quiet"])  # fmt: skip
    assert code == 2
    assert time.perf_counter() - start < 10
    assert "No Dask scheduler answered at tcp://127.0.0.1:9 within 1 s" in capsys.readouterr().err
    assert not (tmp_path / "s.zarr").exists()


# ------------------------------------------------------------------------ real processes


def _start(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
    )


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_cli_batch_on_the_subprocess_cluster_uses_both_workers(smears, scheduler, tmp_path):
    import zarr

    images = tmp_path / "many"
    images.mkdir()
    _copies(smears["images"] / "smear0.png", images, 8)
    out = tmp_path / "cluster.zarr"
    assert main(["batch", str(images), "--out", str(out), "--scheduler", scheduler,
                 "--quiet"]) == 0  # fmt: skip
    root = zarr.open_group(out, mode="r")
    groups = dict(root["images"].groups())
    assert len(groups) == 8
    pids = {g.attrs["napari_leukemia"]["worker_pid"] for g in groups.values()}
    assert len(pids) == 2  # both worker processes did part of the work
    summary = pd.read_parquet(out / "tables" / "summary.parquet")
    # the same image gives the same calls whichever worker analysed it
    per_image = summary.groupby("image")["malignant_probability"].apply(tuple)
    assert per_image.nunique() == 1


def test_subprocess_batch_ctrl_c_stops_workers_and_the_store_resumes(smears, scheduler, tmp_path):
    """SIGINT to ``napari-leukemia batch --workers 1`` (its own LocalCluster) mid-run:
    exit 130, no worker left running, only complete images kept; a re-run finishes."""
    import zarr

    images = tmp_path / "fields"
    images.mkdir()
    _copies(smears["images"] / "smear1.png", images, 30)
    out = tmp_path / "interrupted.zarr"
    command = [sys.executable, "-m", "napari_leukemia.cli", "batch", str(images), "--out",
               str(out), "--workers", "1", "--quiet"]  # fmt: skip

    def complete() -> int:
        if not (out / "images").is_dir():
            return 0
        groups = zarr.open_group(out / "images", mode="r").groups()
        return sum(bool(g.attrs.get("napari_leukemia", {}).get("complete")) for _, g in groups)

    process = _start(command)
    try:
        _wait_for(lambda: complete() >= 1, 120, "a first finished image")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert _children(process.pid) == []  # the embedded cluster's workers are gone
    assert 1 <= complete() < 30
    report = run_batch([images], out, scheduler=scheduler, progress=False)
    assert report.skipped + report.analysed == 30
    assert complete() == 30


def _copies(source: Path, folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"field{i:02d}.png").write_bytes(source.read_bytes())


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text:
            found.append(int(status.parent.name))
    return found


# ------------------------------------------------------------------------ napari reader


def test_reader_returns_the_layers_of_one_image(smears, full_store):
    from napari_leukemia.batch.reader import napari_get_reader, read_store

    out, _ = full_store
    smear = smears["arrays"]["smear1"]
    cells = nl.detect_cells(smear.image)
    layers = {kw["name"]: (data, kw, kind) for data, kw, kind in read_store(out, "smear1")}
    image, kwargs, kind = layers["smear1"]
    assert kind == "image" and kwargs["rgb"]
    np.testing.assert_array_equal(np.asarray(image[0]), smear.image)
    assert len(image) >= 2 and image[1].shape[:2] == (112, 112)
    boxes, kwargs, kind = layers["smear1 cells"]
    assert kind == "shapes" and len(boxes) == len(cells)
    assert kwargs["features"]["cell"].tolist() == list(range(1, len(cells) + 1))
    grad_cam = layers["smear1 Grad-CAM"][0]
    assert grad_cam.shape == (len(cells), *smear.image.shape[:2])
    explained = nl.explain_full(smear.image, "grad_cam", bbox=cells[0].bbox).map
    np.testing.assert_allclose(np.asarray(grad_cam[0]), explained, rtol=1e-4, atol=1e-6)
    morphology = layers["smear1 morphology"][0]
    np.testing.assert_array_equal(np.asarray(morphology[0]), smear.labels)
    # the image group itself opens the same image; other folders are not ours
    assert napari_get_reader(str(out / "images" / "smear2")) is read_store
    assert napari_get_reader(str(smears["images"])) is None
    assert napari_get_reader(str(out / "tables")) is None


def test_store_opens_in_a_napari_viewer(make_napari_viewer, full_store):
    out, _ = full_store
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-leukemia")
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "smear0"  # the first image by name
    assert {"smear0 cells", "smear0 Grad-CAM", "smear0 LRP-ε", "smear0 morphology"} <= set(names)
    shapes = viewer.layers["smear0 cells"]
    assert "P(Benign)" in shapes.features.columns
    assert viewer.layers["smear0 Grad-CAM"].data.shape[1:] == (224, 224)


# ------------------------------------------------------------------------ killed worker (last:
# the cluster's nanny restarts the killed worker, but later tests would wait for it)


def test_killed_worker_mid_run_loses_nothing(smears, scheduler, tmp_path):
    """SIGKILL one of the two worker processes during a run: Dask gives its images to the
    other worker, the run finishes, and every image in the store is complete."""
    import threading

    import zarr

    images = tmp_path / "fields"
    images.mkdir()
    _copies(smears["images"] / "smear2.png", images, 30)
    out = tmp_path / "killed.zarr"
    outcome = {}

    def run():
        try:
            outcome["report"] = run_batch([images], out, scheduler=scheduler, progress=False)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error

    def finished_pids() -> list[int]:
        if not (out / "images" / "zarr.json").is_file():
            return []
        groups = zarr.open_group(out / "images", mode="r").groups()
        meta = [g.attrs.get("napari_leukemia", {}) for _, g in groups]
        return [m["worker_pid"] for m in meta if m.get("complete")]

    thread = threading.Thread(target=run)
    thread.start()
    _wait_for(lambda: len(finished_pids()) >= 3, 120, "three finished images")
    assert thread.is_alive(), "the run ended before a worker could be killed"
    os.kill(finished_pids()[0], signal.SIGKILL)
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert (report.analysed, report.failed) == (30, 0)
    assert len(finished_pids()) == 30
