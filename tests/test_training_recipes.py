"""Training recipes checked against their definitions: stain (HED) jitter and the focus
penalty's share of the input gradient outside the cell."""

import numpy as np
import pytest
from skimage.color import hed2rgb, rgb2hed

from napari_leukemia.model import augment
from napari_leukemia.model.cell_context import BLANK
from napari_leukemia.synthetic import make_smear


def _rgb():
    return (make_smear(seed=3).image[:64, :64].astype(np.float32) / 255.0)[None]


def test_stain_densities_are_skimages_where_it_does_not_clip_and_round_trip_exactly():
    rgb = _rgb()
    ours = augment.to_hed(rgb).numpy()[0]
    reference = rgb2hed(rgb[0].astype(np.float64))
    inside = (ours >= 0).all(axis=-1)
    assert inside.mean() > 0.3  # the comparison covers a good part of the image
    # float32 against float64 on values of at most ~0.3: a few float32 ulps
    assert np.abs(ours[inside] - reference[inside]).max() < 1e-5
    back = augment.from_hed(augment.to_hed(rgb)).numpy()
    assert np.abs(back - rgb).max() < 1e-4
    assert (
        np.abs(
            augment.from_hed(reference[None].astype(np.float32)).numpy()[0] - hed2rgb(reference)
        ).max()
        < 1e-5
    )


def test_zero_strength_jitter_changes_nothing_and_jitter_stays_in_range():
    rgb = _rgb()
    assert np.abs(augment.stain_jitter(rgb, 0.0, seed=1).numpy() - rgb).max() < 1e-4
    jittered = augment.stain_jitter(np.repeat(rgb, 8, axis=0), 0.1, seed=1).numpy()
    assert jittered.min() >= 0.0 and jittered.max() <= 1.0
    assert np.abs(jittered - rgb).mean() > 1e-3  # it does change the stains


def test_outside_cell_marks_exactly_the_blank_pixels():
    images = np.full((1, 4, 4, 3), BLANK, np.float32)
    images[0, 1, 2] = (BLANK, 0.5, BLANK)  # one channel below blank: part of the cell
    outside = augment.outside_cell(images).numpy()[0, ..., 0]
    expected = np.ones((4, 4))
    expected[1, 2] = 0
    assert np.array_equal(outside, expected)


def test_focus_share_is_the_squared_gradient_share_outside():
    import tensorflow as tf

    from napari_leukemia.model import architectures
    from napari_leukemia.model.focus_penalty import focus_trainer

    model = architectures.build("default-cell")
    trainer = focus_trainer(model, weight=1.0)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((2, 64, 64, 3)), tf.float32)
    outside = np.zeros((2, 64, 64, 1), np.float32)
    outside[:, :20] = 1.0
    share = trainer._outside_share(images, tf.constant(outside), False).numpy()
    with tf.GradientTape() as tape:
        tape.watch(images)
        log_p = tf.reduce_sum(tf.math.log(tf.maximum(model(images), 1e-7)), axis=-1)
    energy = tape.gradient(log_p, images).numpy() ** 2
    expected = (energy * outside).sum(axis=(1, 2, 3)) / energy.sum(axis=(1, 2, 3))
    assert share == pytest.approx(expected, rel=1e-5)
    assert np.all((share > 0) & (share < 1))


def test_a_focus_penalty_needs_a_cell_only_model(tmp_path):
    from napari_leukemia.model.architectures import input_spec
    from napari_leukemia.model.training import Recipe, check_recipe

    with pytest.raises(ValueError, match="reads the cell alone"):
        check_recipe(Recipe(focus_penalty=1.0), "default", input_spec("default"), {})
    with pytest.raises(ValueError, match="0 or more"):
        check_recipe(Recipe(stain_jitter=-1.0), "default", input_spec("default"), {})
    with pytest.raises(ValueError, match="no metadata"):
        check_recipe(
            Recipe(init=str(tmp_path / "none.keras")),
            "default-cell",
            input_spec("default-cell"),
            {},
        )


def test_mask_jitter_shaves_a_square_rim_of_0_to_k_pixels_off_each_cell():
    """Each jittered input is its cell with the blank surroundings dilated by a square
    of side 2r + 1 for one r in 0..k (scipy's binary dilation), and nothing else changes."""
    from scipy.ndimage import binary_dilation

    k = 3
    one = np.full((20, 20, 3), BLANK, np.float32)
    one[4:15, 6:17] = np.linspace(0.2, 0.6, 11 * 11 * 3, dtype=np.float32).reshape(11, 11, 3)
    one[9, 3] = 0.4  # a lone cell pixel near the edge
    images = np.repeat(one[None], 64, axis=0)
    out = augment.jitter_mask(images, k, seed=5).numpy()
    outside = np.all(one >= BLANK, axis=-1)
    candidates = []
    for r in range(k + 1):
        grown = binary_dilation(outside, np.ones((2 * r + 1,) * 2, bool)) if r else outside
        candidates.append(np.where(grown[..., None], BLANK, one))
    seen = set()
    for image in out:
        matches = [r for r, c in enumerate(candidates) if np.array_equal(image, c)]
        assert matches, "an input is not its cell shaved by a square rim"
        seen.add(matches[0])
    assert seen == set(range(k + 1))  # every width is drawn


def test_mask_jitter_grows_training_masks_and_needs_a_cell_only_model():
    from napari_leukemia.model.architectures import input_spec
    from napari_leukemia.model.cell_context import GROW_PX
    from napari_leukemia.model.inputs import field_inputs
    from napari_leukemia.model.training import Recipe, check_recipe

    with pytest.raises(ValueError, match="reads the cell alone"):
        check_recipe(Recipe(mask_jitter=3), "default", input_spec("default"), {})
    with pytest.raises(ValueError, match="number of pixels"):
        check_recipe(Recipe(mask_jitter=1.5), "default-cell", input_spec("default-cell"), {})
    image = make_smear(seed=3).image
    spec = input_spec("default-cell")
    usual, cells = field_inputs(image, spec)
    wider, _ = field_inputs(image, spec, GROW_PX + 3)
    same, _ = field_inputs(image, spec, GROW_PX)
    assert np.array_equal(usual, same)
    kept = lambda x: np.any(x < BLANK, axis=-1).sum(axis=(1, 2))  # noqa: E731
    assert np.all(kept(wider) > kept(usual)) and len(cells) == len(usual)
