"""The Explain widget in a real napari viewer (run under Xvfb).

Fast tests use small untrained models saved into a temporary folder (the plugin's
default CNN, and variants for the bad-input cases); one test uses the bundled model and
skips while it has not been trained yet.
"""

import subprocess
import sys

import numpy as np
import pytest

from napari_leukemia._widgets import explain_widget, selection, workers
from napari_leukemia._widgets.explain_widget import ExplainWidget
from napari_leukemia.cells import detect_cells
from napari_leukemia.synthetic import make_smear

TIMEOUT = 180_000  # ms; the machine may be training a model on both cores


def _save(model, path, info=True):
    from napari_leukemia.model import architectures
    from napari_leukemia.model.metadata import ModelInfo, write_info

    model.save(path)
    if info:
        write_info(path, ModelInfo(input=architectures.input_spec("default")))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small untrained models: the default CNN, zero logits, unsupported layers, 3 classes."""
    from napari_leukemia.model import architectures
    from napari_leukemia.model.backend import keras_module

    keras = keras_module()
    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    default = _save(architectures.build("default"), folder / "m.keras")

    zero = architectures.build("default")
    logits = zero.get_layer("logits")
    logits.set_weights([np.zeros_like(w) for w in logits.get_weights()])
    zero_path = _save(zero, folder / "zero.keras")

    inputs = keras.Input((64, 64, 3), name="image")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(4, name="logits")(x)
    odd = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x))
    odd_path = _save(odd, folder / "norm.keras")

    # no metadata file: the widget cannot know its classes before loading it
    three = _save(architectures.build("default", n_classes=3), folder / "three.keras", False)

    bad = folder / "bad.keras"
    bad.write_text("not a model")
    return {"default": default, "zero": zero_path, "norm": odd_path, "three": three, "bad": bad}


@pytest.fixture
def messages(monkeypatch):
    """What the widget told the user, by kind."""
    told = {"error": [], "warning": [], "info": []}
    for kind in told:
        monkeypatch.setattr(explain_widget, f"show_{kind}", told[kind].append)
    monkeypatch.setattr(workers, "show_error", told["error"].append)
    return told


@pytest.fixture
def scene(make_napari_viewer, models):
    """A viewer with the sample smear (scaled and shifted), its cells, cell 1 selected."""
    viewer = make_napari_viewer()
    smear = make_smear(seed=0)
    where = {"scale": (0.5, 0.5), "translate": (10.0, -4.0)}
    layer = viewer.add_image(smear.image, name="smear", **where)
    data, kwargs, _ = selection.cells_layer_data(detect_cells(smear.image), "smear")
    cells = viewer.add_shapes(data, **kwargs, **where)
    selection.select_cell(cells, 0)
    widget = ExplainWidget(viewer)
    widget.image.value = layer
    widget.model_file.value = models["default"]
    return viewer, layer, cells, widget


def run(widget, qtbot):
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT)


def attribution_layers(viewer):
    return [
        lay
        for lay in viewer.layers
        if lay.metadata.get("napari_leukemia", {}).get("kind") == "attribution"
    ]


def test_maps_are_aligned_layers_with_the_engines_values(scene, models, qtbot, messages):
    from napari_leukemia.explain import explain_full
    from napari_leukemia.model.classify import load_model

    viewer, layer, cells, widget = scene
    cell = selection.selected_cell(viewer, layer)
    widget.methods.value = ["gradient_x_input", "lrp_epsilon", "grad_cam"]
    widget.field("lrp_epsilon", "epsilon").value = 0.25
    run(widget, qtbot)

    assert not messages["error"]
    assert widget.progress.max == 3 and widget.progress.value == 3
    loaded = load_model(models["default"])
    for method, label in (
        ("gradient_x_input", "Gradient × Input"),
        ("lrp_epsilon", "LRP-ε"),
        ("grad_cam", "Grad-CAM"),
    ):
        params = {"epsilon": 0.25} if method == "lrp_epsilon" else {}
        expected = explain_full(layer.data, method, loaded, bbox=cell.bbox, **params)
        name = f"{label} · {expected.target_name} · cell 1"
        assert name in viewer.layers, [lay.name for lay in viewer.layers]
        out = viewer.layers[name]
        assert out.data.shape == layer.data.shape[:2]
        np.testing.assert_allclose(out.data, expected.map, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out.scale, layer.scale)
        np.testing.assert_allclose(out.translate, layer.translate)
        low, high = out.contrast_limits
        if expected.signed:
            assert low == pytest.approx(-high) and high == pytest.approx(
                np.abs(expected.map).max(), rel=1e-5
            )
            assert out.colormap.name == explain_widget.SIGNED_COLORMAP.name
        else:
            assert low == 0 and high == pytest.approx(expected.map.max(), rel=1e-5)
            assert out.colormap.name == explain_widget.POSITIVE_COLORMAP.name
        # the strongest relevance is still see-through, so the cell shows under the map
        assert out.blending == "translucent"
        assert 0.5 <= out.opacity * out.colormap.colors[:, 3].max() < 1
        meta = out.metadata["napari_leukemia"]
        assert meta["kind"] == "attribution" and meta["method"] == method
        assert meta["cell"] == 1 and meta["image_layer"] == "smear"
        assert meta["target"] == expected.target_name
        assert meta["logit"] == pytest.approx(expected.logit, rel=1e-4, abs=1e-6)
        assert meta["roi_transform"] == expected.transform.as_dict()
    assert viewer.layers["LRP-ε · " + expected.target_name + " · cell 1"].metadata[
        "napari_leukemia"
    ]["params"] == {"epsilon": 0.25}
    # signed maps: diverging; Grad-CAM is non-negative
    assert viewer.layers[f"Grad-CAM · {expected.target_name} · cell 1"].contrast_limits[0] == 0
    # the map is zero outside the explained ROI, so the rest of the image stays visible
    grad = viewer.layers[f"Gradient × Input · {expected.target_name} · cell 1"].data
    top, left = (int(v) for v in expected.transform.origin)
    assert not grad[: max(top, 0)].any() and not grad[:, : max(left, 0)].any()


def test_rerun_replaces_its_own_layer_and_never_a_users(scene, qtbot, messages):
    viewer, layer, cells, widget = scene
    widget.methods.value = ["gradient"]
    run(widget, qtbot)
    (first,) = attribution_layers(viewer)
    name = first.name
    assert name.startswith("Gradient · ") and name.endswith(" · cell 1")
    # a layer of the user's own, with that very name, and the plugin's map renamed by napari
    viewer.layers.remove(first)
    user = viewer.add_image(np.ones((8, 8)), name=name)
    run(widget, qtbot)
    (mine,) = attribution_layers(viewer)
    assert mine.name != name and user in viewer.layers
    # re-running updates the plugin's map (found by its metadata) in place
    index = viewer.layers.index(mine)
    mine.data = np.zeros_like(mine.data)
    viewer.add_points([[1, 1]], name="on top")
    run(widget, qtbot)
    (again,) = attribution_layers(viewer)
    assert again is mine and viewer.layers.index(again) == index and again.data.any()
    assert user in viewer.layers and np.all(user.data == 1)
    # another cell gets its own layer
    selection.select_cell(cells, 1)
    run(widget, qtbot)
    names = sorted(lay.name for lay in attribution_layers(viewer))
    assert len(names) == 2 and any(n.endswith(" · cell 2") for n in names)
    assert not messages["error"]


def test_whole_field_when_the_checkbox_is_off(scene, models, qtbot, messages):
    from napari_leukemia.explain import explain_full

    viewer, layer, cells, widget = scene
    widget.use_cell.value = False
    widget.methods.value = ["gradient"]
    run(widget, qtbot)
    (out,) = attribution_layers(viewer)
    assert out.name.endswith(" · field")
    expected = explain_full(layer.data, "gradient", str(models["default"]))
    np.testing.assert_allclose(out.data, expected.map, rtol=1e-5, atol=1e-7)
    assert out.metadata["napari_leukemia"]["cell"] is None


def test_side_by_side_shows_each_map_named_over_its_cell_and_back(scene, qtbot, messages):
    viewer, layer, cells, widget = scene
    widget.methods.value = ["gradient", "grad_cam"]
    run(widget, qtbot)
    maps = attribution_layers(viewer)
    # maps lie under the cells layer, so the boxes and numbers stay visible
    assert all(viewer.layers.index(m) < viewer.layers.index(cells) for m in maps)
    before = [(lay.name, lay.visible) for lay in viewer.layers]
    assert not viewer.canvas.grid.enabled
    widget.grid_button.clicked.emit(True)
    grid = viewer.canvas.grid
    assert grid.enabled and widget.grid_button.text == "Overlay"
    # one panel per map; in each, a view of the image (same array) under the map
    panels = [
        [viewer.layers[i] for i in indices]
        for _, indices in grid.iter_viewboxes(viewer.layers)
        if any(viewer.layers[i].visible for i in indices)
    ]
    assert len(panels) == len(maps) == 2
    first = [lay for lay in panels[0] if lay.visible]
    assert first[-1] is maps[0]  # the first method in the top-left panel
    for panel in panels:
        shown = [lay for lay in panel if lay.visible]
        assert len(shown) == 2
        under, top = shown
        assert under.data is layer.data and top in maps
        assert top.name_overlay.visible
    assert not layer.visible and not cells.visible  # the rest is hidden
    # the camera is centred on the explained cell's ROI (world coordinates)
    _, (top_, left, bottom, right) = widget.last_window
    centre = np.array([(top_ + bottom - 1) / 2, (left + right - 1) / 2])
    world = centre * np.asarray(layer.scale) + np.asarray(layer.translate)
    np.testing.assert_allclose(viewer.camera.center[-2:], world, atol=1e-6)
    assert viewer.camera.zoom > 1.0
    widget.grid_button.clicked.emit(True)
    assert not viewer.canvas.grid.enabled and widget.grid_button.text == "Side by side"
    assert [(lay.name, lay.visible) for lay in viewer.layers] == before
    assert not any(m.name_overlay.visible for m in maps)
    # again, then a new explanation comes back to the overlay by itself
    widget.grid_button.clicked.emit(True)
    assert viewer.canvas.grid.enabled
    run(widget, qtbot)
    assert not viewer.canvas.grid.enabled and widget.grid_button.text == "Side by side"
    assert sorted(lay.name for lay in viewer.layers) == sorted(name for name, _ in before)


def test_target_class_by_name(scene, qtbot, messages):
    viewer, layer, cells, widget = scene
    assert widget.target.choices == ("predicted", "Benign", "Early Pre-B", "Pre-B", "Pro-B")
    widget.target.value = "Pro-B"
    widget.methods.value = ["gradient"]
    run(widget, qtbot)
    (out,) = attribution_layers(viewer)
    assert out.name == "Gradient · Pro-B · cell 1"
    assert out.metadata["napari_leukemia"]["target_index"] == 3


def test_unknown_target_is_an_error_and_the_widget_keeps_working(scene, models, qtbot, messages):
    viewer, layer, cells, widget = scene
    widget.model_file.value = models["three"]  # no metadata: classes unknown until loaded
    widget.target.value = "Pro-B"
    widget.methods.value = ["gradient", "lrp_z"]
    run(widget, qtbot)
    assert not attribution_layers(viewer)
    assert len(messages["error"]) == 1  # the same message for both methods, told once
    assert "'Pro-B' is not a class" in messages["error"][0]
    assert "class 0, class 1, class 2" in messages["error"][0]
    # the loaded model's classes replace the guess; the choice falls back to predicted
    assert widget.target.choices == ("predicted", "class 0", "class 1", "class 2")
    assert widget.target.value == "predicted" and widget.run_button.enabled
    run(widget, qtbot)
    assert len(attribution_layers(viewer)) == 2


def test_an_all_zero_map_is_reported_not_drawn(scene, models, qtbot, messages):
    viewer, layer, cells, widget = scene
    widget.target.value = "Benign"  # what a model with all-zero logits predicts
    widget.methods.value = ["gradient"]
    run(widget, qtbot)
    assert len(attribution_layers(viewer)) == 1
    widget.model_file.value = models["zero"]  # logits weights all zero: no gradient at all
    widget.methods.value = ["gradient", "grad_cam"]
    run(widget, qtbot)
    assert not messages["error"]
    warnings = [m for m in messages["warning"] if "no layer added" in m]
    assert len(warnings) == 2
    assert any(m.startswith("Gradient · cell 1") for m in warnings)
    assert any(m.startswith("Grad-CAM · cell 1") and "all zero" in m for m in warnings)
    # the stale map of the earlier model for the same method, class and cell is gone too
    assert not attribution_layers(viewer)
    assert widget.progress.value == widget.progress.max == 2


def test_unsupported_layers_are_named_and_other_methods_still_run(scene, models, qtbot, messages):
    viewer, layer, cells, widget = scene
    widget.model_file.value = models["norm"]
    widget.methods.value = ["gradient", "lrp_epsilon"]
    run(widget, qtbot)
    assert len(messages["error"]) == 1
    assert messages["error"][0].startswith("LRP-ε:")
    assert "'norm' (LayerNormalization)" in messages["error"][0]
    (out,) = attribution_layers(viewer)
    assert out.name.startswith("Gradient · ")


def test_a_bad_model_file_is_a_clear_error(scene, models, qtbot, messages):
    viewer, layer, cells, widget = scene
    widget.model_file.value = models["bad"]
    run(widget, qtbot)
    assert not attribution_layers(viewer)
    assert len(messages["error"]) == 1 and "bad.keras" in messages["error"][0]
    assert widget.run_button.enabled and "Failed" in widget.status.value


def test_empty_model_field_or_a_folder_means_the_bundled_model(scene, tmp_path):
    viewer, layer, cells, widget = scene
    widget.model_file.value = tmp_path
    assert widget._model_path() is None
    widget.model_file.value = ""
    assert widget._model_path() is None
    widget.model_file.value = None
    assert widget._model_path() is None and widget.model_file.line_edit.value == ""
    assert ExplainWidget(viewer)._model_path() is None  # a new widget starts empty


def test_parameters_default_to_the_engines(make_napari_viewer):
    from napari_leukemia.explain import METHODS

    widget = ExplainWidget(make_napari_viewer())
    assert widget.methods.value == ["gradient_x_input", "lrp_epsilon", "grad_cam"]
    assert widget.params_for("lrp_epsilon") == METHODS["lrp_epsilon"].defaults()
    assert widget.params_for("integrated_gradients") == {"steps": 32}
    assert widget.params_for("smoothgrad") == {"samples": 32, "noise": pytest.approx(0.15)}
    assert widget.params_for("lrp_alpha_beta") == {"alpha": 1.0, "beta": 0.0}
    assert widget.params_for("grad_cam") == {} and widget.params_for("occlusion") == {}
    widget.field("grad_cam", "layer").value = "relu4"
    widget.field("occlusion", "window").value = 8
    assert widget.params_for("grad_cam_pp") == {"layer": "relu4"}
    assert widget.params_for("occlusion") == {"window": 8}


def test_every_method_has_a_runner_and_a_form_built_from_the_method_table(make_napari_viewer):
    """The form comes from `MethodInfo.form_params`: a field per shown parameter, with the
    parameter's default (or its "automatic" value), range and doc; what the form gives
    each method passes the method's own checks; a row is shown only for its methods."""
    from napari_leukemia.explain import METHODS
    from napari_leukemia.explain.runners import RUNNERS, runner_for

    widget = ExplainWidget(make_napari_viewer())
    for method, info in METHODS.items():
        assert runner_for(method) is RUNNERS[info.runner], method
        shown = {p.name for p in info.form_params}
        assert shown == {p.name for p in METHODS[info.form_owner].form_params}, method
        own = {p.name: p for p in METHODS[info.form_owner].form_params}
        for param in info.form_params:
            field = widget.field(method, param.name)
            assert own[param.name].doc in field.tooltip, (method, param.name)
            shared = (own[param.name].default, own[param.name].none_as, own[param.name].widget)
            assert shared == (param.default, param.none_as, param.widget), (method, param.name)
            if param.widget == "text":
                assert field.value == ("" if param.default is None else param.default)
                continue
            assert field.value == (param.none_as if param.default is None else param.default)
            assert (field.min, field.max) == (param.low, param.high), (method, param.name)
        given = widget.params_for(method)
        assert set(given) <= shown, method
        resolved = info.resolve(given)
        assert resolved == {**info.defaults(), **resolved}, method
        widget.methods.value = [method]
        rows = [box for box in widget._param_rows.values() if not box.native.isHidden()]
        assert len(rows) == (1 if shown else 0), method
        if shown:
            assert widget.field(method, next(iter(shown))) in list(rows[0]), method
    owned = {(m, p.name) for m, info in METHODS.items() for p in info.form_params}
    assert {key for key in widget.fields} == {k for k in owned if METHODS[k[0]].form_owner == k[0]}
    widget.field("smoothgrad", "samples").value = 5
    widget.field("lrp_alpha_beta", "beta").value = 1.5
    assert widget.params_for("smoothgrad")["samples"] == 5
    assert widget.params_for("lrp_alpha_beta") == {"alpha": 1.0, "beta": 1.5}


def test_the_widget_docks_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-leukemia", "Explain")
    assert dock is not None and isinstance(widget, ExplainWidget)


def test_bundled_model_when_no_model_is_chosen(scene, qtbot, messages):
    from napari_leukemia.explain import explain_full
    from napari_leukemia.model.classify import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled model has not been trained yet")
    viewer, layer, cells, widget = scene
    widget.model_file.value = None
    widget.methods.value = ["lrp_epsilon", "grad_cam"]
    cell = selection.selected_cell(viewer, layer)
    run(widget, qtbot)
    assert not messages["error"]
    layers = attribution_layers(viewer)
    assert len(layers) == 2
    for out in layers:
        meta = out.metadata["napari_leukemia"]
        assert meta["model"] == "bundled"
        expected = explain_full(layer.data, meta["method"], bbox=cell.bbox)
        assert out.name.endswith(f"· {expected.target_name} · cell 1")
        np.testing.assert_allclose(out.data, expected.map, rtol=1e-5, atol=1e-7)


def test_tensorflow_loads_after_napari_has_an_opengl_context():
    """Importing TensorFlow after the viewer's GL context segfaulted (Mesa's libLLVM).

    Run in a fresh process: in this one TensorFlow is already imported.
    """
    code = (
        "import os, napari\n"
        "viewer = napari.Viewer(show=False)\n"
        "from napari_leukemia._widgets.explain_widget import import_tensorflow\n"
        "import_tensorflow()\n"
        "import tensorflow as tf\n"
        "print('gradient', float(tf.constant(2.0) * 3.0), flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gradient 6.0" in done.stdout
