"""Training augmentations: geometry first, then colour (and, if asked, stain jitter).

Geometry (flips, 90° rotations, zoom, shear) and colour (brightness, contrast, hue,
saturation, noise) are two steps so that a cell-only model's blank surroundings can be
read off the images between them (`outside_cell`), before colour changes move the blank.

Stain jitter perturbs each image's haematoxylin, eosin and DAB densities (skimage's
colour deconvolution matrices, `skimage.color.hed_from_rgb` / `rgb_from_hed`) by a
random scale and shift per stain (Tellez et al. 2018): slides stained more or less
strongly than the training ones then look familiar, and the model cannot tell
patients apart by stain alone.
"""

from __future__ import annotations

import numpy as np

from .backend import keras_module
from .cell_context import BLANK

#: skimage's optical-density floor (`skimage.color.colorconv` clips RGB to this).
_OD_FLOOR = 1e-6


def geometric(seed: int):
    """Random flips, zoom and shear of [0, 1] images (90° turns are added by the caller)."""
    layers = keras_module().layers
    return keras_module().Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical", seed=seed),
            layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=seed),
            layers.RandomShear(x_factor=0.15, y_factor=0.15, fill_mode="reflect", seed=seed),
        ],
        name="geometry",
    )


def photometric(channels: int, seed: int):
    """Random brightness, contrast, (RGB only) hue and saturation, and Gaussian noise."""
    layers = keras_module().layers
    steps = [
        layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed),
        layers.RandomContrast(0.15, seed=seed),
    ]
    if channels == 3:
        steps += [
            layers.RandomHue(0.04, value_range=(0.0, 1.0), seed=seed),
            layers.RandomSaturation((0.4, 0.6), value_range=(0.0, 1.0), seed=seed),
        ]
    steps.append(layers.GaussianNoise(0.02, seed=seed))
    return keras_module().Sequential(steps, name="colour")


def _matrices():
    from skimage.color import hed_from_rgb, rgb_from_hed

    return np.asarray(hed_from_rgb, np.float32), np.asarray(rgb_from_hed, np.float32)


def to_hed(images):
    """RGB in [0, 1] → stain densities, as `skimage.color.rgb2hed` computes them but
    without clipping negative densities to 0, so that `from_hed(to_hed(x))` is `x`
    (skimage's clip changes colours outside the three stains' cone, e.g. pale pinks, by
    up to a quarter of the range: a colour shift of its own that jitter must not add)."""
    import tensorflow as tf

    hed_from_rgb, _ = _matrices()
    density = tf.math.log(tf.maximum(images, _OD_FLOOR)) / np.log(_OD_FLOOR).astype(np.float32)
    return tf.linalg.matmul(density, hed_from_rgb)


def from_hed(stains):
    """Stain densities → RGB in [0, 1], as `skimage.color.hed2rgb` computes it."""
    import tensorflow as tf

    _, rgb_from_hed = _matrices()
    log_rgb = tf.linalg.matmul(stains * -np.log(_OD_FLOOR).astype(np.float32), -rgb_from_hed)
    return tf.clip_by_value(tf.exp(log_rgb), 0.0, 1.0)


def stain_jitter(images, strength: float, seed: int):
    """Scale each stain by U(1 - s, 1 + s) and shift it by U(-s, s) · 0.05, per image.

    The shift is in stain-density units (a clean slide is 0, a dark nucleus about
    0.1–0.2), so `strength` 0.1 moves a stain by at most 0.005 and scales it by ±10 %.
    """
    import tensorflow as tf

    batch = tf.shape(images)[0]
    scale = tf.random.uniform([batch, 1, 1, 3], 1 - strength, 1 + strength, seed=seed)
    shift = tf.random.uniform([batch, 1, 1, 3], -strength, strength, seed=seed + 1) * 0.05
    return from_hed(to_hed(images) * scale + shift)


def jitter_mask(images, pixels: int, seed: int):
    """Blank a random 0 to `pixels` wide rim (in input pixels, per image) around each
    cell's blanked surroundings: the cell's mask shrinks as if the detector had drawn
    its edge a little tighter."""
    import tensorflow as tf

    outside = outside_cell(images)
    grown = [outside] + [
        tf.nn.max_pool2d(outside, 2 * r + 1, 1, "SAME") for r in range(1, pixels + 1)
    ]
    pick = tf.random.uniform([tf.shape(images)[0]], 0, pixels + 1, dtype=tf.int32, seed=seed)
    chosen = tf.gather(tf.stack(grown, axis=1), pick, axis=1, batch_dims=1)
    return tf.where(chosen > 0, tf.cast(BLANK, images.dtype), images)


def outside_cell(images):
    """Pixels (N, rows, cols, 1; 1.0 = outside) that a cell-only input left blank."""
    import tensorflow as tf

    blank = tf.reduce_all(images >= BLANK - 1e-6, axis=-1, keepdims=True)
    return tf.cast(blank, images.dtype)
