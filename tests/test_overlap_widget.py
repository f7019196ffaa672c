"""Relevance overlap widget in a real napari viewer (run under Xvfb)."""

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication

from napari_leukemia._widgets.labels_widget import labels_layer_kwargs
from napari_leukemia._widgets.overlap_widget import (
    UNDEFINED,
    RelevanceOverlapWidget,
    overlap_table,
)
from napari_leukemia.labels import MORPHOLOGY_CLASSES
from napari_leukemia.roi import extract_roi
from napari_leukemia.synthetic import make_smear

ATTRIBUTION = {"napari_leukemia": {"kind": "attribution", "method": "test"}}


@pytest.fixture
def setup(make_napari_viewer):
    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    viewer.add_image(smear.image, name="smear", rgb=True)
    labels = viewer.add_labels(
        smear.labels.astype(np.int32), **labels_layer_kwargs(MORPHOLOGY_CLASSES, "truth")
    )
    widget = RelevanceOverlapWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.labels.value = labels
    return viewer, widget, labels, smear


def add_map(viewer, data, name, meta=ATTRIBUTION):
    return viewer.add_image(np.asarray(data, np.float32), name=name, metadata=meta)


def row(table, map_name, label):
    hit = table[(table["map"] == map_name) & (table["label"] == label)]
    assert len(hit) == 1
    return hit.iloc[0]


def shown_texts(widget):
    t = widget.table_panel.table
    return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]


def test_nucleus_indicator_map_has_all_mass_on_nucleus(setup):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    assert widget.maps.value == ["nucleus map"]  # attribution layers are chosen by default
    table = widget.compute()
    assert row(table, "nucleus map", 1)["relevance_mass"] == pytest.approx(1.0)
    assert row(table, "nucleus map", 1)["relevant_fraction"] == pytest.approx(1.0)
    assert row(table, "nucleus map", 2)["relevance_mass"] == pytest.approx(0.0)
    # the docks show it; the console can read it from the labels layer
    assert widget.table_panel.table.rowCount() == len(table) == 5
    assert widget.table_dock is not None and widget.chart_dock is not None
    records = labels.metadata["napari_leukemia"]["overlap"]
    assert {r["name"] for r in records} == set(MORPHOLOGY_CLASSES.values())
    tsv = widget.table_panel.copy()
    assert QApplication.clipboard().text() == tsv
    assert tsv.splitlines()[0].split("\t")[:3] == ["map", "label", "name"]
    assert len(tsv.splitlines()) == 6


def test_two_maps_give_two_colours_per_label_group(setup):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    add_map(viewer, smear.labels == 4, "rbc map")
    widget.compute()
    texts = shown_texts(widget)  # unsorted until a header is clicked: map, then label order
    assert [t[0] for t in texts] == ["nucleus map"] * 5 + ["rbc map"] * 5
    assert [t[2] for t in texts[:5]] == list(MORPHOLOGY_CLASSES.values())
    chart = widget.chart_panel
    assert set(chart.bars) == {"nucleus map", "rbc map"}
    assert chart.groups == list(MORPHOLOGY_CLASSES.values())
    colours = {tuple(bars.patches[0].get_facecolor()) for bars in chart.bars.values()}
    assert len(colours) == 2
    assert all(len(bars.patches) == 5 for bars in chart.bars.values())
    heights = [p.get_height() for p in chart.bars["rbc map"].patches]
    assert heights[3] == pytest.approx(1.0)  # red blood cell group
    widget.metric.value = "relevance_density"  # another metric re-plots
    assert chart.axes.get_ylabel() == "relevance density"


def test_row_click_highlights_that_label(setup, qtbot):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    widget.compute()
    table = widget.table_panel.table
    table.sortItems(6, Qt.SortOrder.DescendingOrder)  # sort by relevant_fraction
    assert table.item(0, 2).text() == "nucleus"
    r = next(i for i in range(table.rowCount()) if table.item(i, 2).text() == "red blood cell")
    rect = table.visualItemRect(table.item(r, 2))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert labels.selected_label == 4
    assert labels.show_selected_label
    widget.table_panel.show_all_button.click()
    assert not labels.show_selected_label


def test_repaint_recomputes_automatically(setup, qtbot):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    widget.compute()
    before = row(widget.table, "nucleus map", 1)["pixels"]
    widget.auto.value = True
    labels.paint((2, 2), 1, refresh=True)  # a brush stroke of nucleus in a corner
    qtbot.waitUntil(lambda: row(widget.table, "nucleus map", 1)["pixels"] > before, timeout=3000)
    assert row(widget.table, "nucleus map", 1)["relevance_mass"] == pytest.approx(1.0)
    # switched off: painting no longer recomputes
    widget.auto.value = False
    now = row(widget.table, "nucleus map", 1)["pixels"]
    labels.paint((200, 200), 1, refresh=True)
    qtbot.wait(500)
    assert row(widget.table, "nucleus map", 1)["pixels"] == now


def test_empty_labels_give_an_empty_table_and_a_message(setup):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    empty = viewer.add_labels(np.zeros(smear.labels.shape, np.int32), name="empty")
    widget.labels.value = empty
    table = widget.compute()
    assert table.empty and widget.table_panel.table.rowCount() == 0
    assert "empty" in widget.message.value
    assert "overlap" in empty.metadata["napari_leukemia"]
    assert widget.chart_panel.bars == {}


def test_constant_map_is_undefined_and_not_plotted(setup):
    viewer, widget, labels, smear = setup
    add_map(viewer, np.zeros(smear.labels.shape), "all zero")
    add_map(viewer, smear.labels == 1, "nucleus map")
    table = widget.compute()
    assert not row(table, "all zero", 1)["defined"]
    assert not table.select_dtypes("number").isna().any().any()
    texts = [t for t in shown_texts(widget) if t[0] == "all zero"]
    assert texts and all(UNDEFINED in t for t in texts)
    assert set(widget.chart_panel.bars) == {"nucleus map"}
    assert UNDEFINED in widget.chart_panel.axes.get_title()
    assert any("undefined" in m for m in widget.messages)


def test_nan_map_and_shape_mismatch_give_messages(setup):
    viewer, widget, labels, smear = setup
    bad = (smear.labels == 1).astype(np.float32)
    bad[0, 0] = np.nan
    add_map(viewer, bad, "nan map")
    add_map(viewer, np.ones((50, 60)), "small map")
    add_map(viewer, smear.labels == 1, "good map")
    table = widget.compute()
    assert set(table["map"]) == {"good map"}
    text = " ".join(widget.messages)
    assert "'nan map'" in text and "NaN" in text
    assert "'small map' is 50x60" in text and "different image" in text


def test_roi_map_uses_its_transform(setup):
    viewer, widget, labels, smear = setup
    bbox = smear.cell_bboxes[0]
    nucleus = (smear.labels == 1).astype(np.float32)
    roi, transform = extract_roi(nucleus, bbox, size=(64, 64), pad_value=0.0)
    # the ROI of the nucleus indicator: relevance where the nucleus is
    roi_map = (roi > 0.5).astype(np.float32)
    meta = {"napari_leukemia": {"kind": "attribution", "roi_transform": transform.as_dict()}}
    add_map(viewer, roi_map, "roi map", meta)
    table = widget.compute()
    assert row(table, "roi map", 1)["relevance_mass"] > 0.9
    # an image-shaped map carrying its ROI transform (as the Explain widget adds it)
    field_map = np.zeros(smear.labels.shape, np.float32)
    field_map[smear.labels == 1] = 1.0
    meta = {"napari_leukemia": {"kind": "attribution", "roi_transform": transform.as_dict()}}
    add_map(viewer, field_map, "field map", meta)
    table = widget.compute()
    assert row(table, "field map", 1)["relevance_mass"] == pytest.approx(1.0)
    # labels of another image (other shape) are refused with a clear message
    other = viewer.add_labels(np.ones((100, 100), np.int32), name="other")
    widget.labels.value = other
    table = widget.compute()
    assert table.empty
    assert sum("different image" in m for m in widget.messages) == 2


def test_save_csv_never_overwrites(setup, tmp_path):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    widget.compute()
    panel = widget.table_panel
    path = tmp_path / "overlap.csv"
    assert panel.save_csv(path) == path
    first = path.read_text()
    assert first.startswith("map,label,name")
    with pytest.raises(FileExistsError):
        panel.save_csv(path)
    panel.ask_path = lambda: str(path)
    panel.confirm_overwrite = lambda p: False
    path.write_text("precious")
    assert panel._save_clicked() is None and path.read_text() == "precious"
    panel.confirm_overwrite = lambda p: True
    assert panel._save_clicked() == path and path.read_text() == first


def test_core_reports_float_labels_and_empty_labels():
    rel = np.random.default_rng(0).random((8, 8))
    table, notes, errors = overlap_table({"m": (rel, None)}, np.ones((8, 8), float))
    assert table.empty and "dtype float64" in errors[0]
    table, notes, errors = overlap_table({"m": (rel, None)}, np.zeros((8, 8), int))
    assert table.empty and "empty" in notes[0] and not errors


def test_map_and_labels_of_different_named_images_are_flagged(setup):
    viewer, widget, labels, smear = setup
    labels.metadata["napari_leukemia"] = {"image_layer": "smear"}
    meta = {"napari_leukemia": {"kind": "attribution", "image_layer": "another field"}}
    add_map(viewer, smear.labels == 1, "other map", meta)
    table = widget.compute()
    assert len(table) == 5  # same shape: computed, but the user is told
    assert any("'another field'" in m and "same field" in m for m in widget.messages)
    # a preprocessed layer of the same image is the same field: no warning
    meta = {"napari_leukemia": {"kind": "attribution", "image_layer": "smear · unsharp mask"}}
    viewer.layers["other map"].metadata = meta
    widget.compute()
    assert not any("same field" in m for m in widget.messages)


def test_a_cell_map_is_quantified_on_its_roi_as_documented(setup):
    """Default region: the map's exact ROI values against the labels on the ROI grid
    (the docs' protocol), not the whole field where zeros outside the ROI dilute it."""
    from napari_leukemia._widgets.explain_widget import display_kwargs, layer_meta
    from napari_leukemia.explain import explain_full
    from napari_leukemia.model.classify import load_model
    from napari_leukemia.quantify import quantify

    viewer, widget, labels, smear = setup
    result = explain_full(smear.image, "gradient_x_input", load_model(), bbox=smear.cell_bboxes[0])
    meta = layer_meta(result, "gradient_x_input", "smear", None, None)
    viewer.add_image(
        result.map, name="GxI", metadata={"napari_leukemia": meta}, **display_kwargs(result)
    )
    table = widget.compute()
    on_roi = quantify(result.input_map, smear.labels, transform=result.transform)
    rows, cols = result.input_map.shape
    assert set(table["region"]) == {f"cell ROI ({rows}x{cols})"}
    for column in ("pixels", "relevant_pixels", "relevance_mass", "relevant_fraction"):
        assert table[column].tolist() == on_roi[column].tolist(), column
    widget.region.value = "whole field"
    whole = widget.compute()
    on_field = quantify(result.map, smear.labels)
    assert set(whole["region"]) == {"whole field"}
    assert whole["relevant_pixels"].tolist() == on_field["relevant_pixels"].tolist()
    assert whole["pixels"].sum() == smear.labels.size > table["pixels"].sum()


def test_map_list_offers_only_one_channel_maps(setup):
    viewer, widget, labels, smear = setup
    add_map(viewer, smear.labels == 1, "nucleus map")
    add_map(viewer, smear.labels == 2, "a user's own map", meta={})
    roi, transform = extract_roi(smear.image, (60, 60, 120, 120), size=32)
    viewer.add_image(roi, name="ROI", rgb=True, metadata={"napari_leukemia": {"kind": "roi"}})
    viewer.add_image(
        smear.image[..., 0], name="gray", metadata={"napari_leukemia": {"kind": "preprocessed"}}
    )
    widget.maps.reset_choices()
    assert set(widget.maps.choices) == {"nucleus map", "a user's own map"}  # not smear (RGB)


def test_labels_choice_moves_from_empty_to_a_painted_draft(make_napari_viewer):
    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    viewer.add_image(smear.image, name="smear", rgb=True)
    widget = RelevanceOverlapWidget(viewer)
    viewer.window.add_dock_widget(widget)
    empty = viewer.add_labels(np.zeros(smear.labels.shape, np.int32), name="new labels")
    assert widget.labels.value is empty
    draft = viewer.add_labels(smear.labels.astype(np.int32), name="suggested")
    assert widget.labels.value is draft
    # a painted choice stays when another layer is added
    viewer.add_labels(np.zeros(smear.labels.shape, np.int32), name="another empty")
    viewer.add_labels(smear.labels.astype(np.int32), name="second draft")
    assert widget.labels.value is draft


def test_chart_legend_never_covers_a_bar(setup):
    viewer, widget, labels, smear = setup
    for code in (1, 2, 3):
        add_map(viewer, smear.labels == code, f"map {code}")
    widget.compute()
    figure = widget.chart_panel.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (ax,) = figure.axes
    (legend,) = figure.legends
    legend = legend.get_window_extent(renderer)
    for bars in widget.chart_panel.bars.values():
        for patch in bars.patches:
            assert not legend.overlaps(patch.get_window_extent(renderer))
    for tick in ax.get_xticklabels():
        assert not legend.overlaps(tick.get_window_extent(renderer))
    widget.compute()  # a second run draws one legend, not two
    assert len(figure.legends) == 1
