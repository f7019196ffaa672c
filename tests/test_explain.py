"""`explain`: each method checked against its definition, plugin models, bad input.

Models are small (the plugin's default CNN at 64x64 with random weights and random
batch-norm statistics, or hand-built nets), so every check runs in the default suite.
LRP rules are checked in test_explain_lrp.py, real architectures in test_explain_apps.py.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from napari_leukemia.explain import (
    METHODS,
    EmptyMapWarning,
    ExplainError,
    UnsupportedLayerError,
    attribute,
    explain,
    explain_full,
    map_to_image,
)
from napari_leukemia.explain.analyzers import get_engine
from napari_leukemia.model import architectures
from napari_leukemia.model.backend import keras_module
from napari_leukemia.model.classify import LoadedModel
from napari_leukemia.model.inputs import cell_input
from napari_leukemia.model.metadata import InputSpec, ModelInfo
from napari_leukemia.roi import RoiTransform
from napari_leukemia.synthetic import make_smear

keras = keras_module()
import tensorflow as tf  # noqa: E402  (after keras_module set the backend)

ALL_METHODS = list(METHODS)


# ------------------------------------------------------------------------------ helpers
def randomize_batchnorm(model, rng, zero_shift=False):
    """Non-trivial BN statistics so folding is exercised (zero_shift: folded bias 0)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.zeros(n) if zero_shift else rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.3, 2.0, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if layer.center:
                layer.beta.assign(np.zeros(n) if zero_shift else rng.normal(0, 0.2, n))


def default_cnn(seed=0, zero_shift=False, logit_bias=True):
    """The plugin's default CNN (64x64 RGB) with random weights and BN statistics."""
    keras.utils.set_random_seed(seed)
    model = architectures.build("default")
    rng = np.random.default_rng(seed)
    randomize_batchnorm(model, rng, zero_shift)
    logits = model.get_layer("logits")
    logits.bias.assign(
        rng.normal(0, 0.3, logits.bias.shape[0]) if logit_bias else np.zeros(logits.bias.shape[0])
    )
    return model


def logit_model(model):
    return keras.Model(model.inputs[0], model.get_layer("logits").output)


def direct_gradient(model, x, target):
    """∂logit/∂x computed straight from the Keras layers (independent of the engine)."""
    sub = logit_model(model)
    xt = tf.constant(x[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = sub(xt, training=False)[0, target]
    return tape.gradient(score, xt).numpy()[0]


def close(a, b, rel=1e-4):
    """Equal up to `rel` of the larger magnitude (float32 maps)."""
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-30)
    return np.abs(a - b).max() <= rel * scale


@pytest.fixture(scope="module")
def cnn():
    return default_cnn(0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def linear_model():
    """Flatten → Dense: gradients are constant, so IG and occlusion have closed forms."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3))
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Softmax()(logits))


# ------------------------------------------------------------------------------ registry
def test_registry_lists_the_twelve_methods_with_params_and_sign():
    assert ALL_METHODS == [
        "gradient", "abs_gradient", "gradient_x_input", "integrated_gradients",
        "smoothgrad", "lrp_z", "lrp_epsilon", "lrp_alpha_beta", "deep_taylor",
        "grad_cam", "grad_cam_pp", "occlusion",
    ]  # fmt: skip
    assert METHODS["integrated_gradients"].defaults()["steps"] == 32
    assert METHODS["lrp_alpha_beta"].defaults() == {"alpha": 1.0, "beta": 0.0}
    unsigned = {m for m, info in METHODS.items() if not info.signed}
    assert unsigned == {"abs_gradient", "deep_taylor", "grad_cam", "grad_cam_pp"}
    assert all(info.reference for info in METHODS.values())


def test_importing_explain_does_not_import_tensorflow():
    code = (
        "import sys, napari_leukemia.explain as e; e.METHODS; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_the_explain_package_is_callable_as_explain(cnn, image):
    import napari_leukemia.explain as package

    assert np.array_equal(package(image, "gradient", cnn, 1), explain(image, "gradient", cnn, 1))


# ------------------------------------------------------------------- every method: shape
@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_gives_a_finite_float_map_of_the_image_shape(cnn, image, method):
    result = explain_full(image, method, cnn)
    assert result.map.shape == image.shape[:2]
    assert result.map.dtype == np.float32
    assert np.isfinite(result.map).all()
    assert result.map.any()
    assert result.method == method and result.target == result.predicted
    assert result.logit == pytest.approx(
        float(logit_model(cnn)(image[None], training=False)[0, result.target]), rel=1e-4
    )
    assert result.transform is None  # a plain keras.Model gets the image as it is


# ------------------------------------------------------------------------ gradient family
def test_gradient_equals_the_direct_keras_gradient_summed_over_channels(cnn, image):
    target = 2
    grad = direct_gradient(cnn, image, target)
    assert close(explain(image, "gradient", cnn, target), grad.sum(-1))
    assert close(explain(image, "abs_gradient", cnn, target), np.abs(grad).sum(-1))
    assert close(explain(image, "gradient_x_input", cnn, target), (grad * image).sum(-1))


def test_gradient_matches_finite_differences(linear_model):
    x = np.random.default_rng(2).random((12, 12, 3)).astype(np.float32)
    gradient = explain(x, "gradient", linear_model, 1)
    f = logit_model(linear_model)
    h = 1e-2
    for r, c in [(0, 0), (5, 7), (11, 3)]:
        up, down = x.copy(), x.copy()
        up[r, c] += h
        down[r, c] -= h
        numeric = (f(up[None])[0, 1] - f(down[None])[0, 1]).numpy() / (2 * h)
        assert gradient[r, c] == pytest.approx(numeric, rel=1e-2, abs=1e-4)


def test_target_by_name_and_default_is_the_predicted_class(cnn, image):
    default = explain_full(image, "gradient", cnn)
    logits = logit_model(cnn)(image[None], training=False).numpy()[0]
    assert default.target == int(np.argmax(logits))
    other = (default.target + 1) % 4
    by_index = explain_full(image, "gradient", cnn, other)
    by_name = explain_full(image, "gradient", cnn, f"class {other}")
    assert by_index.target == by_name.target == other
    assert np.array_equal(by_index.map, by_name.map)
    assert not np.allclose(by_index.map, default.map)


def test_integrated_gradients_complete_within_a_few_percent(cnn, image):
    result = explain_full(image, "integrated_gradients", cnn, steps=32)
    f = logit_model(cnn)
    t = result.target
    delta = float(f(image[None])[0, t] - f(np.zeros_like(image)[None])[0, t])
    assert result.map.sum() == pytest.approx(delta, rel=0.05)
    assert result.diagnostics["completeness_gap"] < 0.05
    # a finer path gets closer; a baseline equal to the input explains nothing
    fine = explain_full(image, "integrated_gradients", cnn, t, steps=128)
    assert abs(fine.map.sum() - delta) <= abs(result.map.sum() - delta) + 1e-6
    with pytest.warns(EmptyMapWarning):
        assert not explain(image, "integrated_gradients", cnn, t, baseline=image).any()


def test_integrated_gradients_is_exact_on_a_linear_model_in_chunks(linear_model):
    x = np.random.default_rng(4).random((12, 12, 3)).astype(np.float32)
    w = linear_model.get_layer("logits").kernel.numpy()[:, 0].reshape(12, 12, 3)
    expected = ((x - 0.5) * w).sum(-1)
    for batch in (None, 5):
        got = explain(
            x, "integrated_gradients", linear_model, 0, baseline=0.5, steps=8, batch_size=batch
        )
        assert close(got, expected, 1e-5)


def test_integrated_gradients_is_the_trapezoid_sum_of_keras_gradients(cnn, image):
    """IG forms its path after the first (linear) layer and applies that layer's
    transpose once (`InputLinear`); the map must still be the definition, computed here
    straight from the Keras layers on the input-space path."""
    from napari_leukemia.explain.analyzers import gradient_graph
    from napari_leukemia.explain.gradients import InputLinear

    assert InputLinear.of(gradient_graph(cnn)) is not None  # the split path is tested
    steps, baseline = 8, 0.25
    got = explain(image, "integrated_gradients", cnn, 2, steps=steps, baseline=baseline)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] *= 0.5
    path = tf.constant(baseline + alphas[:, None, None, None] * (image[None] - baseline))
    with tf.GradientTape() as tape:
        tape.watch(path)
        score = logit_model(cnn)(path, training=False)[:, 2]
    grads = tape.gradient(score, path).numpy()
    expected = ((image - baseline) * np.tensordot(weights, grads, axes=1)).sum(-1)
    assert close(got, expected, 1e-4)


def test_smoothgrad_is_the_mean_gradient_over_the_seeded_noise(cnn, image):
    samples, noise, seed = 6, 0.2, 7
    result = explain_full(image, "smoothgrad", cnn, 1, samples=samples, noise=noise, seed=seed)
    sigma = noise * float(image.max() - image.min())
    eps = tf.random.stateless_normal((samples, *image.shape), [seed, 0])
    noisy = tf.constant(image[None]) + sigma * eps
    sub = logit_model(cnn)
    with tf.GradientTape() as tape:
        tape.watch(noisy)
        score = sub(noisy, training=False)[:, 1]
    expected = tape.gradient(score, noisy).numpy().mean(0).sum(-1)
    assert close(result.map, expected, 1e-4)
    # zero noise: exactly the gradient; another seed: another map
    plain = explain(image, "gradient", cnn, 1)
    assert close(explain(image, "smoothgrad", cnn, 1, samples=3, noise=0.0), plain)
    assert not np.allclose(
        explain(image, "smoothgrad", cnn, 1, samples=samples, noise=noise, seed=seed + 1),
        result.map,
    )


# ---------------------------------------------------------------------------- occlusion
def test_occlusion_equals_the_logit_drop_of_each_window(linear_model):
    x = np.random.default_rng(5).random((12, 12, 3)).astype(np.float32)
    w = linear_model.get_layer("logits").kernel.numpy()[:, 2].reshape(12, 12, 3)
    got = explain_full(x, "occlusion", linear_model, 2, window=4, stride=4, fill=0.25)
    expected = np.zeros((12, 12))
    for r in range(0, 12, 4):
        for c in range(0, 12, 4):
            block = (slice(r, r + 4), slice(c, c + 4))
            expected[block] = ((x[block] - 0.25) * w[block]).sum()
    assert close(got.map, expected, 1e-4)
    assert got.diagnostics["windows"] == 9


def test_overlapping_occlusion_windows_are_averaged(linear_model):
    x = np.random.default_rng(6).random((12, 12, 3)).astype(np.float32)
    w = linear_model.get_layer("logits").kernel.numpy()[:, 0].reshape(12, 12, 3)
    got = explain(x, "occlusion", linear_model, 0, window=4, stride=2, fill=0.0)
    windows = [0, 2, 4, 6, 8]
    total, count = np.zeros((12, 12)), np.zeros((12, 12))
    for r in windows:
        for c in windows:
            block = (slice(r, r + 4), slice(c, c + 4))
            total[block] += (x[block] * w[block]).sum()
            count[block] += 1
    assert close(got, total / count, 1e-4)


# ------------------------------------------------------------------------------- Grad-CAM
def _direct_cam(model, x, target, layer, plus_plus=False):
    sub = keras.Model(
        model.inputs[0], [model.get_layer(layer).output, model.get_layer("logits").output]
    )
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:  # records through the watched kernels
        features, logits = sub(xt, training=False)
        score = logits[0, target]
    grads = tape.gradient(score, features)
    a, g = features.numpy()[0], grads.numpy()[0]
    if plus_plus:
        g2, g3 = g**2, g**3
        denominator = 2 * g2 + a.sum(axis=(0, 1)) * g3
        alpha = np.where(g != 0, g2 / np.where(denominator != 0, denominator, 1), 0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
    else:
        weights = g.mean(axis=(0, 1))
    cam = np.maximum((a * weights).sum(-1), 0)
    up = tf.image.resize(cam[None, ..., None], x.shape[:2], method="bilinear")
    return up.numpy()[0, ..., 0], cam


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp"])
def test_grad_cam_equals_a_direct_computation_from_conv_activations(cnn, image, method):
    for target in range(4):
        result = explain_full(image, method, cnn, target)
        assert result.layer == "relu5"  # last conv block, after BN and ReLU
        expected, low = _direct_cam(cnn, image, target, "relu5", method == "grad_cam_pp")
        assert result.diagnostics["feature_shape"] == low.shape
        assert close(result.map, expected, 1e-4)
        assert (result.map >= 0).all()


def test_grad_cam_on_a_named_layer_and_bad_layer_names(cnn, image):
    result = explain_full(image, "grad_cam", cnn, 0, layer="relu3")
    expected, low = _direct_cam(cnn, image, 0, "relu3")
    assert low.shape == (16, 16) and result.layer == "relu3"
    assert close(result.map, expected, 1e-4)
    with pytest.raises(ExplainError, match="No layer named 'nope'.*conv1"):
        explain(image, "grad_cam", cnn, layer="nope")
    with pytest.raises(ExplainError, match="not a spatial feature map"):
        explain(image, "grad_cam", cnn, layer="gap")


# ---------------------------------------------------------------------------- analyzers
def test_analyzers_are_built_once_and_reused(image):
    model = default_cnn(11)
    for method in ("gradient", "lrp_epsilon", "grad_cam"):
        params = METHODS[method].defaults()
        explain(image, method, model)
        engine = get_engine(model, method, params)
        explain(image, method, model, 1)
        explain(image[::-1].copy(), method, model)
        assert get_engine(model, method, params) is engine
        assert engine._fn.experimental_get_tracing_count() == 1
    # gradient, |gradient| and gradient x input share one compiled function
    assert get_engine(model, "abs_gradient", {}) is get_engine(model, "gradient", {})
    # other parameters of an LRP rule are another analyzer
    assert get_engine(model, "lrp_epsilon", {"epsilon": 1.0}) is not get_engine(
        model, "lrp_epsilon", {"epsilon": 0.1}
    )


@pytest.mark.filterwarnings("ignore::napari_leukemia.explain.api.EmptyMapWarning")
def test_attribute_batches_match_single_maps(cnn, image):
    batch = np.stack([image, image[::-1], image[:, ::-1]])
    for method in ("gradient_x_input", "lrp_z", "grad_cam", "integrated_gradients"):
        maps, logits, targets = attribute(cnn, batch, method, target=[0, 1, 2])
        assert maps.shape == (3, 64, 64) and list(targets) == [0, 1, 2]
        for i in range(3):
            single = explain(batch[i], method, cnn, i)
            assert close(maps[i], single, 1e-4)


def test_maps_follow_the_weights_after_training(image):
    model = default_cnn(12)
    before = explain(image, "lrp_epsilon", model, 0)
    kernel = model.get_layer("conv3").kernel
    kernel.assign(kernel.numpy() * -1.0)
    after = explain(image, "lrp_epsilon", model, 0)
    assert not np.allclose(before, after)


# ------------------------------------------------------------------------ plugin models
def _loaded(model, kind="cell", size=(64, 64)):
    spec = InputSpec(kind=kind, size=size, pipeline="rgb")
    return LoadedModel(model, ModelInfo(input=spec))


@pytest.fixture(scope="module")
def smear():
    return make_smear(seed=3, n_leukocytes=2)


def test_cell_model_explains_the_bbox_roi_and_maps_it_back(cnn, smear):
    loaded = _loaded(cnn)
    bbox = (60, 70, 110, 120)
    result = explain_full(smear.image, "gradient_x_input", loaded, bbox=bbox)
    assert result.map.shape == smear.image.shape[:2] and result.map.dtype == np.float32
    x, transform = cell_input(smear.image, bbox, loaded.info.input)
    assert result.transform == transform and result.bbox == bbox
    assert close(result.input_map, explain(x, "gradient_x_input", cnn, result.target))
    top, left = (int(v) for v in transform.origin)
    side = int(round(transform.scale[0] * 64))
    inside = np.zeros(result.map.shape, bool)
    inside[max(top, 0) : top + side, max(left, 0) : left + side] = True
    assert not result.map[~inside].any()  # zeros outside the ROI
    assert result.map[inside].any()
    assert set(result.probabilities) == {"Benign", "Early Pre-B", "Pre-B", "Pro-B"}
    named = explain_full(smear.image, "gradient", loaded, "Pre-B", bbox=bbox)
    assert named.target == 2 and named.target_name == "Pre-B"


def test_cell_model_without_bbox_explains_the_most_confident_cell(cnn, smear):
    from napari_leukemia.cells import detect_cells

    result = explain_full(smear.image, "grad_cam", _loaded(cnn))
    best = detect_cells(smear.image)[0]
    assert result.bbox == tuple(int(v) for v in best.bbox)
    assert any("most confident detected cell" in note for note in result.notes)
    blank = np.full((80, 90, 3), 0.9)
    empty_field = explain_full(blank, "gradient", _loaded(cnn))
    assert empty_field.map.shape == (80, 90) and empty_field.bbox is None
    assert any("no cell detected" in note for note in empty_field.notes)


def test_field_model_resizes_the_image_and_the_map_back(cnn, smear):
    image = smear.image[:100, :80]
    result = explain_full(image, "lrp_epsilon", _loaded(cnn, kind="field"))
    assert result.map.shape == (100, 80)
    assert any("resized" in note for note in result.notes)
    assert result.transform.scale == pytest.approx((100 / 64, 80 / 64))
    assert np.isfinite(result.map).all() and result.map.any()


def test_map_to_image_places_the_roi_window():
    transform = RoiTransform(origin=(-2.0, 5.0), scale=(2.0, 2.0), image_shape=(20, 30))
    placed = map_to_image(np.ones((4, 4), np.float32), transform)
    expected = np.zeros((20, 30), np.float32)
    expected[0:6, 5:13] = 1.0
    assert np.array_equal(placed, expected)


# ------------------------------------------------------------------------------ bad input
def test_bad_targets_methods_and_parameters(cnn, image):
    with pytest.raises(ExplainError, match="target 4 does not exist.*4 classes"):
        explain(image, "gradient", cnn, 4)
    with pytest.raises(ExplainError, match="target -1 does not exist"):
        explain(image, "gradient", cnn, -1)
    with pytest.raises(ExplainError, match="'Blast' is not a class.*class 0"):
        explain(image, "gradient", cnn, "Blast")
    with pytest.raises(ExplainError, match="Unknown attribution method 'lrp'.*lrp_z"):
        explain(image, "lrp", cnn)
    with pytest.raises(ExplainError, match="no parameter.*steps.*epsilon"):
        explain(image, "lrp_epsilon", cnn, steps=3)
    with pytest.raises(ExplainError, match="steps must be an integer >= 1"):
        explain(image, "integrated_gradients", cnn, steps=0)
    with pytest.raises(ExplainError, match="epsilon must be > 0"):
        explain(image, "lrp_epsilon", cnn, epsilon=-1)
    with pytest.raises(ExplainError, match="low must be below high"):
        explain(image, "deep_taylor", cnn, low=1.0, high=0.0)


def test_plain_model_gets_the_image_as_it_is_or_a_clear_error(cnn, image):
    with pytest.raises(ExplainError, match=r"shape \(32, 32, 3\).*takes \(64, 64, 3\)"):
        explain(image[:32, :32], "gradient", cnn)
    with pytest.raises(ExplainError, match="bbox needs a plugin model"):
        explain(image, "gradient", cnn, bbox=(0, 0, 10, 10))
    gray = keras.Sequential(
        [keras.Input((16, 16, 1)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    flat = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    assert explain(flat, "gradient", gray).shape == (16, 16)
    result = explain_full((flat * 255).astype(np.uint8), "gradient", gray)
    assert any("unscaled" in note for note in result.notes)


def test_unsupported_layers_are_named_for_lrp_but_gradients_still_work(image):
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Activation("tanh", name="squash")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(UnsupportedLayerError) as info:
        explain(image, "lrp_z", model)
    message = str(info.value)
    assert "'norm' (LayerNormalization)" in message and "'squash' (Activation)" in message
    assert {name for name, _, _ in info.value.layers} == {"norm", "squash"}
    for method in ("gradient", "integrated_gradients", "grad_cam", "occlusion"):
        assert np.isfinite(explain(image, method, model)).all()


def test_subclassed_models_and_multi_output_models_are_refused(image):
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    model = Custom()
    model(image[None])
    with pytest.raises(ExplainError, match="subclassed model"):
        explain(image, "gradient", model)
    inputs = keras.Input((64, 64, 3))
    flat = keras.layers.Flatten()(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(2)(flat), keras.layers.Dense(3)(flat)])
    with pytest.raises(ExplainError, match="2 outputs; explanations need one"):
        explain(image, "gradient", two)


def test_keras_ops_in_a_functional_graph_work_for_gradients_not_lrp(image):
    inputs = keras.Input((64, 64, 3))
    x = keras.ops.multiply(keras.layers.Conv2D(2, 3, name="conv")(inputs), 2.0)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert explain(image, "gradient", model).shape == (64, 64)
    with pytest.raises(UnsupportedLayerError, match="'multiply' \\(Multiply\\)"):
        explain(image, "lrp_epsilon", model)


def test_an_all_zero_map_warns_and_says_so(image):
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(2, 3, kernel_initializer="zeros", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, bias_initializer="ones")(x))
    with pytest.warns(EmptyMapWarning, match="all zero"):
        explain(image, "lrp_z", model)
    result = explain_full(image, "deep_taylor", model)
    assert result.empty and "document 003" in result.notes[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explain(image, "gradient", default_cnn(5))  # a normal map does not warn
