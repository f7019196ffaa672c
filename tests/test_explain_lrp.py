"""LRP rules against their definitions, graph walking, BatchNorm folding.

Rules are checked against a plain numpy implementation of the formulas of Bach et al.
2015 (LRP-0, LRP-ε, LRP-αβ) and Montavon et al. 2017 (z⁺, zᴮ) on small dense networks;
properties (LRP-0 = Gradient×Input, conservation, sign of z⁺) on convolutional graphs
with every supported layer type.
"""

import numpy as np
import pytest

from napari_leukemia.explain import explain, explain_full
from napari_leukemia.explain.analyzers import get_graph, get_lrp_graph
from napari_leukemia.explain.graph import LINEAR, AffineLinear, FoldedLinear
from tests.test_explain import close, default_cnn, direct_gradient, keras

LRP_METHODS = ["lrp_z", "lrp_epsilon", "lrp_alpha_beta", "deep_taylor"]


def lrp0_walk(model, x, target) -> np.ndarray:
    """LRP-0 by the rule walk, never the Gradient × Input shortcut: the tests that
    check the walk against the identity must run the walk."""
    from napari_leukemia.explain.lrp.analyzer import LRPAnalyzer
    from napari_leukemia.explain.lrp.composites import lrp_z

    analyzer = LRPAnalyzer(get_lrp_graph(model)[0], lrp_z(), "lrp_z", shortcut=False)
    assert not analyzer.gradient_form
    relevance, _, _ = analyzer(x[None].astype(np.float32), np.array([target], np.int32))
    return relevance.numpy()[0].sum(-1)


# ------------------------------------------------------------- numpy reference (dense)
def _dense_net(seed, shape=(4, 4, 2), hidden=(7, 5), classes=3, bias=True):
    rng = np.random.default_rng(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Flatten()(inputs)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i}")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    weights = []
    fan_in = int(np.prod(shape))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            w = rng.normal(0, 1.5 / np.sqrt(fan_in), layer.kernel.shape)
            b = rng.normal(0, 0.3, layer.bias.shape) if bias else np.zeros(layer.bias.shape)
            layer.kernel.assign(w)
            layer.bias.assign(b)
            weights.append((w, b))
            fan_in = w.shape[1]
    return model, weights


def _safe_divide(r, z):
    return np.where(z != 0, r / np.where(z != 0, z, 1), 0.0)


def _ref_epsilon(a, w, b, r, eps):
    z = a @ w + b
    return a * (w @ (r / (z + eps * np.where(z >= 0, 1.0, -1.0))))


def _ref_alpha_beta(a, w, b, r, alpha, beta, bias=True):
    ap, an = np.maximum(a, 0), np.minimum(a, 0)
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    bp, bn = (np.maximum(b, 0), np.minimum(b, 0)) if bias else (0.0, 0.0)
    zp = ap @ wp + an @ wn + bp
    zn = ap @ wn + an @ wp + bn
    sp, sn = _safe_divide(r, zp), _safe_divide(r, zn)
    positive = ap * (wp @ sp) + an * (wn @ sp)
    negative = ap * (wn @ sn) + an * (wp @ sn)
    return alpha * positive - beta * negative


def _ref_z_box(a, w, b, r, low, high):
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    lo, hi = np.full_like(a, low), np.full_like(a, high)
    s = _safe_divide(r, a @ w - lo @ wp - hi @ wn)
    return a * (w @ s) - lo * (wp @ s) - hi * (wn @ s)


def reference_lrp(weights, x, target, rule, first=None):
    """Relevance per input feature, summed over channels, by the textbook formulas."""
    activations = [x.reshape(-1).astype(np.float64)]
    for i, (w, b) in enumerate(weights):
        z = activations[-1] @ w + b
        activations.append(np.maximum(z, 0) if i < len(weights) - 1 else z)
    relevance = np.zeros_like(activations[-1])
    relevance[target] = activations[-1][target]
    for i in reversed(range(len(weights))):
        w, b = weights[i]
        apply = first if (i == 0 and first is not None) else rule
        relevance = apply(activations[i], w, b, relevance)
    return relevance.reshape(x.shape).sum(-1), activations[-1][target]


CASES = {
    "lrp_z": ({}, lambda a, w, b, r: _ref_epsilon(a, w, b, r, 0.0), None),
    "lrp_epsilon": (
        {"epsilon": 0.3}, lambda a, w, b, r: _ref_epsilon(a, w, b, r, 0.3), None),
    "lrp_alpha_beta": (
        {"alpha": 2.0, "beta": 1.0}, lambda a, w, b, r: _ref_alpha_beta(a, w, b, r, 2, 1),
        None),
    "z_plus": ({}, lambda a, w, b, r: _ref_alpha_beta(a, w, b, r, 1, 0), None),
    "deep_taylor": (
        {"low": -1.0, "high": 1.0},
        lambda a, w, b, r: _ref_alpha_beta(a, w, b, r, 1, 0, bias=False),
        lambda a, w, b, r: _ref_z_box(a, w, b, r, -1.0, 1.0)),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_rules_equal_the_textbook_formulas_on_a_dense_net(case, seed):
    model, weights = _dense_net(seed)
    # inputs of both signs, so the x⁺ / x⁻ parts of the rules are exercised
    x = np.random.default_rng(10 + seed).uniform(-1, 1, (4, 4, 2)).astype(np.float32)
    params, rule, first = CASES[case]
    method = "lrp_alpha_beta" if case == "z_plus" else case
    for target in range(3):
        got = explain_full(x, method, model, target, **params)
        expected, logit = reference_lrp(weights, x, target, rule, first)
        assert got.logit == pytest.approx(logit, rel=1e-4, abs=1e-6)
        assert close(got.map, expected, 1e-4), (case, target)
        if case == "lrp_z":
            assert close(lrp0_walk(model, x, target), expected, 1e-4), target


# ---------------------------------------------------------- convolutional test graphs
def _everything_net(seed=0, zero_bias=False):
    """A functional net with every layer type the engine supports."""
    keras.utils.set_random_seed(seed)
    bias_init = "zeros" if zero_bias else keras.initializers.RandomNormal(0, 0.1)
    L = keras.layers
    inputs = keras.Input((32, 32, 3), name="image")
    x = L.ZeroPadding2D(1)(inputs)
    x = L.Conv2D(8, 3, bias_initializer=bias_init, name="c1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    skip = x
    x = L.DepthwiseConv2D(3, padding="same", bias_initializer=bias_init, name="dw")(x)
    x = L.BatchNormalization(name="bn_dw")(x)
    x = L.Activation("relu")(x)
    x = L.Conv2D(8, 1, bias_initializer=bias_init, name="pw")(x)
    x = L.Add(name="residual")([x, skip])
    x = L.ReLU(6.0)(x)  # ReLU6, as in MobileNet
    a = L.MaxPooling2D(2)(x)
    b = L.AveragePooling2D(2)(x)
    x = L.Concatenate(name="concat")([a, b])
    x = L.BatchNormalization(name="bn_after_concat")(x)  # cannot be folded
    x = L.SeparableConv2D(
        12, 3, padding="same", activation="relu", bias_initializer=bias_init, name="sep"
    )(x)
    x = L.Dropout(0.5)(x)
    x = L.UpSampling2D(2)(x)
    x = L.AveragePooling2D(4)(x)
    flat = L.Flatten()(x)
    pooled = L.GlobalAveragePooling2D()(x)
    x = L.Concatenate()([flat, pooled])
    x = L.Dense(16, activation="relu", bias_initializer=bias_init, name="fc")(x)
    x = L.Dense(4, activation="softmax", bias_initializer=bias_init, name="logits")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if not zero_bias:
                layer.moving_mean.assign(rng.normal(0, 0.2, n))
                layer.beta.assign(rng.normal(0, 0.2, n))
    return model


def _pre_softmax(model):
    """Same graph ending at the Dense pre-activation (for direct gradients)."""
    dense = model.get_layer("logits")
    linear = keras.layers.Dense(dense.units, name="linear_logits")
    features = dense.input
    out = linear(features)
    linear.set_weights(dense.get_weights())
    return keras.Model(model.inputs[0], out)


@pytest.fixture(scope="module")
def everything():
    return _everything_net(0)


@pytest.fixture(scope="module")
def x32():
    return np.random.default_rng(3).random((32, 32, 3)).astype(np.float32)


def test_graph_walk_covers_every_layer_and_strips_the_fused_softmax(everything):
    graph = get_graph(everything)
    types = {op.type for op in graph.ops}
    assert {
        "ZeroPadding2D",
        "DepthwiseConv2D",
        "Add",
        "Concatenate",
        "SeparableConv2D",
        "UpSampling2D",
        "GlobalAveragePooling2D",
        "Flatten",
        "Dropout",
    } <= types
    assert graph.output_activation == "softmax"
    assert graph.ops[-1].name == "logits" and graph.ops[-1].kind == LINEAR
    lrp_graph, merged = get_lrp_graph(everything)
    assert merged == ["bn1 → c1", "bn_dw → dw"]
    norms = [op for op in lrp_graph.ops if isinstance(op.linear, AffineLinear)]
    assert [op.name for op in norms] == ["bn_after_concat"]
    assert sum(isinstance(op.linear, FoldedLinear) for op in lrp_graph.ops) == 2


def test_lrp_0_equals_gradient_x_input_with_batchnorm_residuals_and_pooling(everything, x32):
    sub = _pre_softmax(everything)
    import tensorflow as tf

    for target in range(4):
        xt = tf.constant(x32[None])
        with tf.GradientTape() as tape:
            tape.watch(xt)
            score = sub(xt, training=False)[0, target]
        expected = (tape.gradient(score, xt).numpy()[0] * x32).sum(-1)
        got = explain(x32, "lrp_z", everything, target)
        assert close(got, expected, 2e-4)
        assert close(lrp0_walk(everything, x32, target), expected, 2e-4)
        assert close(explain(x32, "gradient_x_input", everything, target), expected, 1e-5)


@pytest.mark.parametrize("batchnorm", [True, False])
def test_lrp_0_equals_gradient_x_input_on_the_plugin_cnn(batchnorm):
    if batchnorm:
        model = default_cnn(7)
    else:  # the document-000 CNN: conv+bias+ReLU, max pooling, flatten, dense, dropout
        keras.utils.set_random_seed(7)
        from napari_leukemia.model import architectures

        model = architectures.build("seed004", input_shape=(40, 40, 3))
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(np.random.default_rng(1).normal(0, 0.1, layer.bias.shape))
    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(8).random(shape).astype(np.float32)
    for target in range(4):
        expected = (direct_gradient(model, x, target) * x).sum(-1)
        assert close(explain(x, "lrp_z", model, target), expected, 2e-4)
        assert close(lrp0_walk(model, x, target), expected, 2e-4)


def test_lrp_0_takes_the_gradient_shortcut_only_where_the_identity_holds():
    """LRP-0 = Gradient × Input needs LRP-0 in every layer and activations with
    a(z) = z·a'(z); anything else keeps the rule walk."""
    from napari_leukemia.explain.analyzers import cached
    from napari_leukemia.explain.lrp.analyzer import LRPAnalyzer
    from napari_leukemia.explain.lrp.composites import lrp_epsilon, lrp_z

    relu = default_cnn(3)
    graph = get_lrp_graph(relu)[0]
    assert LRPAnalyzer(graph, lrp_z(), "lrp_z").gradient_form
    assert not LRPAnalyzer(graph, lrp_epsilon(0.1), "lrp_epsilon").gradient_form
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="elu")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(hidden))
    elu = keras.Model(inputs, outputs)
    assert not LRPAnalyzer(get_lrp_graph(elu)[0], lrp_z(), "lrp_z").gradient_form
    x = np.random.default_rng(4).random((8, 8, 3)).astype(np.float32)
    explain(x, "lrp_z", elu, 1)  # the engine the API builds for it walks the rules
    assert not cached(elu, ("lrp", lrp_z()), lambda: None).gradient_form


def test_lrp_z_conserves_the_logit_without_biases(x32):
    model = _everything_net(1, zero_bias=True)
    for target in range(4):
        result = explain_full(x32, "lrp_z", model, target)
        assert result.map.sum() == pytest.approx(result.logit, rel=1e-3)
        eps = explain_full(x32, "lrp_epsilon", model, target, epsilon=1e-7)
        assert eps.map.sum() == pytest.approx(eps.logit, rel=1e-3)
    # with biases, conservation does not hold: the check above can fail
    biased = _everything_net(1)
    result = explain_full(x32, "lrp_z", biased, 0)
    assert abs(result.map.sum() - result.logit) > 1e-3 * abs(result.logit)


def test_lrp_z_conserves_on_the_plugin_cnn_with_zero_shift_batchnorm():
    model = default_cnn(9, zero_shift=True, logit_bias=False)
    x = np.random.default_rng(9).random((64, 64, 3)).astype(np.float32)
    positive = 0
    for target in range(4):
        result = explain_full(x, "lrp_z", model, target)
        assert result.map.sum() == pytest.approx(result.logit, rel=1e-3)
        if result.logit > 0:
            # z⁺ and zᴮ conserve a positive logit on a plain ReLU net (every relevant
            # neuron has a positive pre-activation, hence a positive z⁺ denominator)
            positive += 1
            plus = explain_full(x, "lrp_alpha_beta", model, target)
            assert plus.map.sum() == pytest.approx(plus.logit, rel=1e-3)
            taylor = explain_full(x, "deep_taylor", model, target, low=0.0, high=1.0)
            assert taylor.map.sum() == pytest.approx(taylor.logit, rel=1e-3)
    assert positive


@pytest.mark.parametrize("method", ["lrp_alpha_beta", "deep_taylor"])
def test_z_plus_maps_have_the_sign_of_the_logit_everywhere(x32, method):
    model = _everything_net(5)
    dense = model.get_layer("logits")
    dense.bias.assign(dense.bias.numpy() + np.array([0.5, -0.5, 0.5, -0.5]))
    values = _pre_softmax(model)(x32[None], training=False).numpy()[0]
    assert (values > 0).any() and (values < 0).any(), "need logits of both signs"
    for target, logit in enumerate(values):
        result = explain_full(
            x32,
            method,
            model,
            target,
            **({"low": 0.0, "high": 1.0} if method == "deep_taylor" else {}),
        )
        assert result.logit == pytest.approx(logit, rel=1e-4)
        if logit > 0:
            assert (result.map >= 0).all() and result.map.max() > 0
        else:
            assert (result.map <= 0).all() and result.map.min() < 0
            assert any("negative" in note for note in result.notes)


def test_alpha_beta_with_beta_gives_negative_evidence(everything, x32):
    result = explain_full(x32, "lrp_alpha_beta", everything, 0, alpha=2.0, beta=1.0)
    assert (result.map < 0).any() and (result.map > 0).any()


def test_epsilon_absorbs_relevance_as_it_grows(everything, x32):
    sums = [
        abs(explain(x32, "lrp_epsilon", everything, 1, epsilon=e).sum())
        for e in (1e-6, 1.0, 100.0)
    ]
    assert sums[0] > sums[1] > sums[2]
    z = explain(x32, "lrp_z", everything, 1)
    assert close(explain(x32, "lrp_epsilon", everything, 1, epsilon=1e-9), z, 1e-3)


def test_deep_taylor_uses_the_input_domain_as_bounds(everything, x32):
    x32 = 0.2 + 0.6 * x32  # the image's own range is [0.2, 0.8]
    default = explain_full(x32, "deep_taylor", everything, 0)  # plain model: own range
    assert default.diagnostics["low"] == pytest.approx(float(x32.min()))
    assert any("bounds taken from the input" in note for note in default.notes)
    bounded = explain_full(x32, "deep_taylor", everything, 0, low=0.0, high=1.0)
    assert not np.allclose(default.map, bounded.map)
    outside = explain_full(x32 * 2, "deep_taylor", everything, 0, low=0.0, high=1.0)
    assert any("outside [low, high]" in note for note in outside.notes)


def test_nested_and_sequential_models_give_the_same_maps_as_the_flat_model(x32):
    flat = _everything_net(2)
    # the same layers inside a Sequential wrapper, with a head outside
    keras.utils.set_random_seed(2)
    body = keras.Model(flat.inputs[0], flat.get_layer("fc").output, name="body")
    head = keras.layers.Dense(4, name="head")
    nested = keras.Sequential([keras.Input((32, 32, 3)), body, head, keras.layers.Softmax()])
    head.set_weights(flat.get_layer("logits").get_weights())
    for method in LRP_METHODS + ["gradient", "grad_cam"]:
        params = {"low": 0.0, "high": 1.0} if method == "deep_taylor" else {}
        a = explain(x32, method, flat, 2, **params)
        b = explain(x32, method, nested, 2, **params)
        assert close(a, b, 1e-4), method


def test_a_batchnorm_right_after_the_input_gets_the_first_layer_rule(x32):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.BatchNormalization()(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    for method in LRP_METHODS:
        result = explain_full(x32, method, model, 0)
        assert np.isfinite(result.map).all()
    expected = (direct_gradient_plain(model, x32, 1) * x32).sum(-1)
    assert close(explain(x32, "lrp_z", model, 1), expected, 2e-4)


def direct_gradient_plain(model, x, target):
    import tensorflow as tf

    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt, training=False)[0, target]
    return tape.gradient(score, xt).numpy()[0]
