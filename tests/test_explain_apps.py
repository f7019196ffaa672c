"""Every LRP and CAM method on real architectures (keras.applications, random weights).

Built with ``weights=None`` (nothing is downloaded) at the smallest input each accepts,
so graph walking is exercised on VGG16 (plain stack, fused ReLU, Flatten, dense head),
ResNet50 (ZeroPadding, residual Add, BN after every conv), MobileNet (depthwise convs,
ReLU6, a 1x1-conv classifier with Reshape) and InceptionV3 (Concatenate branches,
average pooling, BN without scale). Batch-norm statistics are set from one batch so
activations have realistic scales.

LRP runs on the network with batch norms folded into the convolutions. Folding is exact
in real numbers but not in float32: a pre-activation within a few ulps of a ReLU kink can
land on the other side (seen on MobileNet with oneDNN off: one unit of conv_pw_13_relu at
-4.0e-5 unfolded, +5.1e-5 folded, which moves Gradient×Input by 11.5 % of its maximum).
So the reference for LRP-0 = Gradient×Input is the gradient of the *unfolded* Keras
model taken with the folded network's activation pattern: equal up to float rounding
on any CPU, whatever side of a kink rounding puts a unit.
"""

import gc

import numpy as np
import pytest

from napari_leukemia.explain import explain_full
from tests.test_explain import close, keras, tf

ARCHITECTURES = {
    "VGG16": ((32, 32), "block5_conv3"),
    "ResNet50": ((32, 32), "conv5_block3_out"),
    "MobileNet": ((32, 32), "conv_pw_13_relu"),
    "InceptionV3": ((75, 75), "mixed10"),
}
METHODS = ["lrp_z", "lrp_epsilon", "lrp_alpha_beta", "deep_taylor", "grad_cam", "grad_cam_pp"]


def _calibrate_batchnorm(model, batch):
    """Moving statistics := the statistics of `batch` (one training-mode pass)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    if norms:
        model(batch, training=True)


def _folded_gradient_x_input(model, x, target):
    """Gradient×Input of the folded graph LRP runs on, and each activation's gate in it."""
    from napari_leukemia.explain.analyzers import get_lrp_graph

    graph, _ = get_lrp_graph(model)
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        values = graph.run(xt, linear_forward=True)
        score = values[graph.output][0, target]
    gxi = (tape.gradient(score, xt).numpy()[0] * x).sum(-1)
    pre_activations = {
        op.name.split("/")[0]: values[op.inputs[0]] for op in graph.ops if op.kind == "activation"
    }
    return gxi, pre_activations


def _derivative(function, z):
    """d function / dz, element-wise, as TensorFlow computes it (0 at a ReLU kink)."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        y = function(z)
    return tape.gradient(y, z)


class _FixedGate(keras.layers.Layer):
    """`linear` then `activation`, with the activation's derivative fixed to `gate`.

    The forward value is the activation's own; only the gradient is pinned, so the
    gradient of a model built from these is that of its linear pieces chosen by `gate`.
    """

    def __init__(self, linear, activation, gate, **kwargs):
        super().__init__(**kwargs)
        self.linear, self.activation, self.gate = linear, activation, gate

    def call(self, x):
        z = x if self.linear is None else self.linear(x)
        y = self.activation(z)
        return z * self.gate + tf.stop_gradient(y - z * self.gate)


def _without_activation(layer):
    """A copy of a fused conv/dense layer with a linear activation and the same weights."""
    config = {**layer.get_config(), "activation": None, "name": f"{layer.name}_linear"}
    linear = type(layer).from_config(config)
    linear.build(layer.input.shape)
    linear.set_weights(layer.get_weights())
    return linear


def _gated_gradient_x_input(model, x, target, pre_activations):
    """Gradient×Input of the unfolded Keras model with the folded network's gates.

    Every activation the LRP graph has (a ReLU layer, an Activation layer, or one fused
    into a conv/dense layer) gets the derivative it has at the folded pre-activation;
    the output softmax is dropped so the score is the logit, as in the engine.
    """

    def clone(layer):
        fused = getattr(layer, "activation", None)
        is_activation_layer = isinstance(layer, keras.layers.ReLU | keras.layers.Activation)
        if layer.name not in pre_activations:
            if fused is not None and fused.__name__ == "softmax":
                if is_activation_layer:
                    return keras.layers.Identity()
                return _without_activation(layer)
            return layer
        function = layer if is_activation_layer else fused
        gate = _derivative(function, pre_activations[layer.name])
        linear = None if is_activation_layer else _without_activation(layer)
        return _FixedGate(linear, function, gate, name=f"{layer.name}_gated")

    gated = keras.models.clone_model(model, clone_function=clone)
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = gated(xt, training=False)[0, target]
    return (tape.gradient(score, xt).numpy()[0] * x).sum(-1)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_lrp_and_cam_methods_run_on_keras_applications(name):
    size, cam_layer = ARCHITECTURES[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(*size, 3), classes=4)
    rng = np.random.default_rng(0)
    _calibrate_batchnorm(model, rng.random((4, *size, 3)).astype(np.float32))
    x = rng.random((*size, 3)).astype(np.float32)
    target = 1
    maps = {}
    for method in METHODS:
        result = explain_full(x, method, model, target)
        assert result.map.shape == size, (name, method)
        assert result.map.dtype == np.float32
        assert np.isfinite(result.map).all(), (name, method)
        maps[method] = result
    logit = maps["lrp_z"].logit
    # LRP-0 = Gradient x Input on the real graph (BN folded, residuals, concat, ReLU6):
    # for the folded network LRP runs on ...
    lrp_z = maps["lrp_z"].map
    assert lrp_z.any()
    folded_gxi, pre_activations = _folded_gradient_x_input(model, x, target)
    assert close(lrp_z, folded_gxi, 1e-4), name
    # ... and for the original Keras model, through the same linear pieces
    assert close(lrp_z, _gated_gradient_x_input(model, x, target, pre_activations), 1e-4), name
    # z⁺ / Deep Taylor: the sign of the logit everywhere
    for method in ("lrp_alpha_beta", "deep_taylor"):
        values = maps[method].map
        assert values.any(), (name, method)
        assert (values * np.sign(logit) >= 0).all(), (name, method)
    assert maps["grad_cam"].layer == maps["grad_cam_pp"].layer == cam_layer
    assert (maps["grad_cam"].map >= 0).all()
    del model, maps
    keras.backend.clear_session()
    gc.collect()
