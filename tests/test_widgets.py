"""The foundation widgets in a real napari viewer (run under Xvfb)."""

from types import SimpleNamespace

import numpy as np
import pytest
from npe2 import PluginManifest

from napari_leukemia._widgets import selection
from napari_leukemia._widgets.cells_widget import DetectCellsWidget
from napari_leukemia._widgets.preprocess_widget import PreprocessWidget
from napari_leukemia._widgets.roi_widget import ExtractRoiWidget
from napari_leukemia.synthetic import make_smear

WIDGETS = (
    "Preprocess",
    "Detect cells",
    "Extract ROI",
    "Classify cell",
    "Explain",
    "Morphology labels",
    "Relevance overlap",
    "Batch",
)


@pytest.fixture
def viewer_with_smear(make_napari_viewer):
    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    layer = viewer.add_image(smear.image, name="smear")
    return viewer, layer, smear


def detect(viewer, layer, qtbot):
    widget = DetectCellsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = layer
    widget.run()
    qtbot.waitUntil(
        lambda: any(selection.is_cells_layer(lay) for lay in viewer.layers), timeout=10000
    )
    # the worker is done (its `finished` comes after the result): a later run's wait on
    # the button cannot be satisfied by this run's end
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=10000)
    return widget, next(lay for lay in viewer.layers if selection.is_cells_layer(lay))


def click(layer, position):
    """Run a layer's mouse callbacks as napari does for a left click at `position`."""
    event = SimpleNamespace(type="mouse_press", button=1, position=position, modifiers=())
    for callback in list(layer.mouse_drag_callbacks):
        result = callback(layer, event)
        if hasattr(result, "__next__"):
            next(result, None)


def test_manifest_declares_every_widget_and_sample():
    manifest = PluginManifest.from_distribution("napari-leukemia")
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert set(WIDGETS) <= widgets
    assert len(manifest.contributions.sample_data) >= 2
    menus = manifest.contributions.menus
    assert any(key.startswith("napari/layers/") for key in menus)


def test_plugin_widgets_dock_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in WIDGETS:
        dock, _ = viewer.window.add_plugin_dock_widget("napari-leukemia", name)
        assert dock is not None


def test_preprocess_adds_a_new_layer_and_keeps_the_input(viewer_with_smear):
    viewer, layer, smear = viewer_with_smear
    before = layer.data.copy()
    widget = PreprocessWidget(viewer)
    widget.image.value = layer
    widget.step.value = "unsharp mask"
    widget.run()
    widget.step.value = "document 000 pipeline"
    widget.run()
    names = [lay.name for lay in viewer.layers]
    assert "smear · unsharp mask" in names and "smear · document 000 pipeline" in names
    np.testing.assert_array_equal(layer.data, before)
    out = viewer.layers["smear · document 000 pipeline"]
    assert out.data.shape == (224, 224)
    assert out.data.min() >= 0.0 and out.data.max() <= 1.0


def test_preprocess_uses_the_current_plane_of_a_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    stack = np.stack([np.full((32, 32), v, np.uint8) for v in (10, 200, 90)])
    layer = viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 1)
    widget = PreprocessWidget(viewer)
    widget.image.value = layer
    widget.step.value = "grayscale"
    widget.run()
    result = viewer.layers["stack · grayscale"].data
    assert result.shape == (32, 32)
    assert result.mean() == pytest.approx(200 / 255)


def test_detect_select_and_extract_roi(viewer_with_smear, qtbot):
    viewer, layer, smear = viewer_with_smear
    widget, cells = detect(viewer, layer, qtbot)
    assert len(cells.data) >= 1
    assert list(cells.features.columns[:3]) == ["cell", "score", "selected"]
    first = selection.selected_cell(viewer)
    assert first is not None and first.index == 0 and first.image_layer is layer

    # clicking inside another cell on the image selects it
    if len(cells.data) > 1:
        corners = np.asarray(cells.data[1])
        centre = corners.mean(axis=0)
        viewer.layers.selection.active = layer
        click(layer, tuple(centre))
        chosen = selection.selected_cell(viewer)
        assert chosen.index == 1
        assert widget._cell.value == chosen.label
        # selecting a shape with napari's select tool selects it too
        cells.selected_data = {0}
        assert selection.selected_cell(viewer).index == 0

    roi_widget = ExtractRoiWidget(viewer)
    from napari_leukemia.model.classify import bundled_model_path
    from napari_leukemia.model.metadata import read_info

    spec = read_info(bundled_model_path()).input
    # defaults: what the bundled model takes
    assert (roi_widget._size.value, roi_widget._margin.value) == (spec.size[0], spec.margin)
    roi_widget._size.value = 224
    roi_layer = roi_widget.run()
    chosen = selection.selected_cell(viewer)
    assert roi_layer.data.shape == (224, 224, 3)
    # drawn under the cells layer, so the cell's box stays visible
    assert viewer.layers.index(roi_layer) < viewer.layers.index(cells)
    meta = roi_layer.metadata["napari_leukemia"]
    assert meta["bbox"] == list(chosen.bbox)
    # the ROI lies over its cell: world position of the ROI's centre = bbox centre
    centre_world = roi_layer.data_to_world((111.5, 111.5))
    bbox = np.asarray(chosen.bbox, float)
    expected = (bbox[:2] + bbox[2:]) / 2 - 0.5
    np.testing.assert_allclose(centre_world, expected, atol=1.0)
    # the ROI's pixels are the image's pixels at the same world position
    roi_pixel = roi_layer.data[112, 112]
    image_pixel = (
        layer.data[tuple(np.round(roi_layer.data_to_world((112, 112))).astype(int))] / 255
    )
    np.testing.assert_allclose(roi_pixel, image_pixel, atol=0.12)
    # re-running replaces the plugin's own ROI layer instead of piling up copies
    roi_widget.run()
    assert sum(lay.name == roi_layer.name for lay in viewer.layers) == 1


def test_user_drawn_box_can_be_selected_and_extracted(viewer_with_smear, qtbot):
    viewer, layer, smear = viewer_with_smear
    _, cells = detect(viewer, layer, qtbot)
    box = selection.bbox_to_rectangle((150, 150, 190, 190))
    cells.add_rectangles(box)
    selection.select_cell(cells, len(cells.data) - 1)
    chosen = selection.selected_cell(viewer)
    assert chosen.bbox == (150, 150, 190, 190)
    assert chosen.cell_id == len(cells.data)  # a fresh id after the detected ones
    assert ExtractRoiWidget(viewer).run() is not None


def test_edge_cell_roi_stays_on_the_image(viewer_with_smear, qtbot):
    """A box at the corner: the ROI layer shows only the part on the image, aligned."""
    viewer, layer, smear = viewer_with_smear
    _, cells = detect(viewer, layer, qtbot)
    cells.add_rectangles(selection.bbox_to_rectangle((0, 0, 30, 24)))
    selection.select_cell(cells, len(cells.data) - 1)
    roi_layer = ExtractRoiWidget(viewer).run()
    rows, cols = layer.data.shape[:2]
    (top, left), (bottom, right) = roi_layer.extent.world
    assert top >= -0.5 and left >= -0.5 and bottom <= rows - 0.5 and right <= cols - 0.5
    assert roi_layer.data.shape[0] < 64 and roi_layer.data.shape[1] < 64  # padding cut off
    # its transform describes exactly the pixels it holds
    meta = roi_layer.metadata["napari_leukemia"]["roi_transform"]
    np.testing.assert_allclose(
        meta["origin"], roi_layer.data_to_world((0, 0)) - (np.asarray(meta["scale"]) - 1) / 2
    )
    corner = np.round(roi_layer.data_to_world((0, 0))).astype(int)
    assert (corner >= 0).all()


def test_cell_numbers_read_on_pale_and_dark_smears():
    from napari_leukemia.cells import Cell

    cell = Cell(bbox=(20, 20, 40, 40), mask=np.ones((20, 20), bool), score=1.0)
    for fill, expected in ((235, selection.LABEL_ON_LIGHT), (40, selection.LABEL_ON_DARK)):
        image = np.full((80, 80, 3), fill, np.uint8)
        _, kwargs, _ = selection.cells_layer_data([cell], "smear", image)
        assert kwargs["text"]["color"]["array"] == [expected]
    assert selection.LABEL_ON_LIGHT != selection.LABEL_ON_DARK


def test_blank_image_gives_no_cells_and_a_message(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.full((100, 100, 3), 240, np.uint8), name="blank")
    widget, cells = detect(viewer, layer, qtbot)
    assert len(cells.data) == 0
    assert "No cells" in widget._status.value
    assert selection.selected_cell(viewer) is None
    assert ExtractRoiWidget(viewer).run() is None  # an error message, no exception


def test_rerunning_detection_keeps_user_layers(viewer_with_smear, qtbot):
    viewer, layer, _ = viewer_with_smear
    viewer.add_shapes(name=f"cells · {layer.name}")  # the user's own layer of that name
    widget, _ = detect(viewer, layer, qtbot)
    widget.run()
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=10000)
    kinds = [selection.is_cells_layer(lay) for lay in viewer.layers]
    assert kinds.count(False) == 2  # the image and the user's layer are still there


def test_rerunning_detection_keeps_edited_cells(viewer_with_smear, qtbot):
    viewer, layer, _ = viewer_with_smear
    widget, cells = detect(viewer, layer, qtbot)
    cells.add_rectangles(selection.bbox_to_rectangle((150, 150, 190, 190)))  # a user edit
    widget.run()
    qtbot.waitUntil(lambda: widget._run.enabled, timeout=10000)
    assert cells in viewer.layers  # the edited layer survives next to the new result
    assert sum(selection.is_cells_layer(lay) for lay in viewer.layers) == 2
