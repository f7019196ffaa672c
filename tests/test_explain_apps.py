"""Every LRP and CAM method on real architectures (keras.applications, random weights).

Built with ``weights=None`` (nothing is downloaded) at the smallest input each accepts,
so graph walking is exercised on VGG16 (plain stack, fused ReLU, Flatten, dense head),
ResNet50 (ZeroPadding, residual Add, BN after every conv), MobileNet (depthwise convs,
ReLU6, a 1x1-conv classifier with Reshape) and InceptionV3 (Concatenate branches,
average pooling, BN without scale). Batch-norm statistics are set from one batch so
activations have realistic scales.
"""

import gc

import numpy as np
import pytest

from napari_leukemia.explain import explain_full
from tests.test_explain import close, keras

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
    import tensorflow as tf

    from napari_leukemia.explain.analyzers import get_lrp_graph

    graph, _ = get_lrp_graph(model)
    xt = tf.constant(x[None])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = graph.run(xt, linear_forward=True)[graph.output][0, target]
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
    # exactly for the folded network LRP runs on ...
    lrp_z = maps["lrp_z"].map
    assert lrp_z.any()
    assert close(lrp_z, _folded_gradient_x_input(model, x, target), 1e-4), name
    # ... and up to the few ReLUs whose sign flips when folding rounds a near-zero
    # pre-activation differently (about 0.5 % of the largest value in InceptionV3)
    gxi = explain_full(x, "gradient_x_input", model, target).map
    assert close(lrp_z, gxi, 2e-2), name
    assert np.corrcoef(lrp_z.ravel(), gxi.ravel())[0, 1] > 0.999
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
