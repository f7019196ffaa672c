"""The README's main job: every output is written, readable and exact; nothing overwritten."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import napari_leukemia as nl
from napari_leukemia import demo
from napari_leukemia.cli import main
from napari_leukemia.labels import MORPHOLOGY_CLASSES, MORPHOLOGY_COLORS, load_labels

FIGURES = (
    "summary.png",
    "labels_truth.png",
    *(f"map_{method}.png" for method in demo.DEMO_METHODS),
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One headless demo run shared by the tests below: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--headless", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_headless_demo_writes_all_outputs(demo_run):
    out, printed = demo_run
    expected = {
        "smear.png",
        "labels_truth.png",
        "labels_truth_raw.png",
        "preprocessed.png",
        "cells.csv",
        "roi_cell1.png",
        "classification.json",
        "relevance_by_label.csv",
        "summary.png",
        *(f"map_{method}.{ext}" for method in demo.DEMO_METHODS for ext in ("png", "npy")),
    }
    assert expected <= {p.name for p in out.iterdir()}
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) >= 1 and (cells["max_row"] > cells["min_row"]).all()
    result = json.loads((out / "classification.json").read_text())
    assert sum(result["field"]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    table = pd.read_csv(out / "relevance_by_label.csv")
    assert set(table["method"]) == set(demo.DEMO_METHODS)
    for _, rows in table.groupby("method"):
        assert rows["relevant_fraction"].sum() == pytest.approx(1.0, abs=1e-6)
    assert "Outputs written to" in printed


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_rgb_and_not_blank(demo_run, name):
    out, _ = demo_run
    with Image.open(out / name) as figure:
        assert figure.mode == "RGB"
        width, height = figure.size
        pixels = np.asarray(figure, dtype=np.float64)
    assert 600 <= width <= 2400 and 300 <= height <= 1400, figure.size
    assert pixels.std() > 25.0, f"{name} is nearly one flat colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500


def test_labels_figure_uses_the_morphology_colours(demo_run):
    out, _ = demo_run
    colours = np.unique(np.asarray(Image.open(out / "labels_truth.png")).reshape(-1, 3), axis=0)
    present = {tuple(c) for c in colours}
    for code, rgba in MORPHOLOGY_COLORS.items():
        expected = tuple(int(v * 255 + 0.5) for v in rgba[:3])
        assert expected in present, f"{MORPHOLOGY_CLASSES[code]} colour {expected} missing"


def test_raw_labels_keep_the_exact_values_and_names(demo_run):
    out, _ = demo_run
    labels, names = load_labels(out / "labels_truth_raw.png")
    truth = demo.demo_smear(0).labels
    np.testing.assert_array_equal(labels, truth)
    assert names == {int(v): MORPHOLOGY_CLASSES[int(v)] for v in np.unique(truth) if v}


def test_raw_maps_equal_what_explain_returns(demo_run):
    out, _ = demo_run
    image = demo.demo_smear(0).image
    first = pd.read_csv(out / "cells.csv").iloc[0]
    bbox = tuple(int(first[k]) for k in ("min_row", "min_col", "max_row", "max_col"))
    for method in demo.DEMO_METHODS:
        saved = np.load(out / f"map_{method}.npy")
        expected = nl.explain(image, method, bbox=bbox)
        assert saved.dtype == expected.dtype == np.float32
        assert np.array_equal(saved, expected), method


def test_demo_smear_is_the_shipped_sample_and_follows_the_seed():
    from napari_leukemia.synthetic import sample_smear

    np.testing.assert_array_equal(demo.demo_smear(0).image, sample_smear("smear_224").image)
    assert not np.array_equal(demo.demo_smear(1).image, demo.demo_smear(0).image)


def test_viewer_demo_shows_the_headless_smear(make_napari_viewer, monkeypatch):
    import napari

    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer(**kwargs))
    viewer, widgets = demo.run_viewer(seed=3)
    smear = demo.demo_smear(3)
    np.testing.assert_array_equal(viewer.layers[0].data, smear.image)
    np.testing.assert_array_equal(viewer.layers[1].data, smear.labels)
    assert "seed 3" in viewer.layers[0].name
    assert "Explain" in widgets


def test_demo_refuses_a_folder_with_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--headless", "--out", str(tmp_path)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_every_widget_and_the_result_docks_fit_a_1600x1000_screen(make_napari_viewer, monkeypatch):
    """The demo's tabbed widgets, the two other widgets and the overlap table and chart
    docks all docked at once: the window still fits 1600x1000 with a usable canvas
    (screenshots at that size: scripts/screenshots.py)."""
    import napari

    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer(**kwargs))
    viewer, widgets = demo.run_viewer()
    for name in ("Morphology labels", "Relevance overlap"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget(
            "napari-leukemia", name, tabify=True
        )
    overlap = widgets["Relevance overlap"]
    overlap.labels.value = viewer.layers[1]
    viewer.add_image(
        (viewer.layers[1].data == 1).astype(np.float32),
        name="nucleus map",
        metadata={"napari_leukemia": {"kind": "attribution", "method": "test"}},
    )
    overlap.compute()  # adds the table and chart docks
    assert overlap.table_dock is not None and overlap.chart_dock is not None
    window = viewer.window._qt_window
    hint = window.minimumSizeHint()
    assert hint.height() <= 1000 and hint.width() <= 1600, (hint.width(), hint.height())
    # the canvas keeps most of the screen: the docks' minimum width leaves it >= 800 px
    assert 1600 - hint.width() >= 800, hint.width()
