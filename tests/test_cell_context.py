"""Inputs of models that read the cell alone: only the cell's grown mask is left."""

import numpy as np
import pytest

from napari_leukemia.cells import detect_cells
from napari_leukemia.model.architectures import input_spec
from napari_leukemia.model.cell_context import (
    BLANK,
    GROW_PX,
    cell_masks,
    cell_only_rois,
    full_mask,
)
from napari_leukemia.model.inputs import cell_inputs, field_inputs
from napari_leukemia.roi import extract_roi
from napari_leukemia.synthetic import make_smear


@pytest.fixture(scope="module")
def smear():
    return make_smear(seed=0)


def test_pixels_outside_the_mask_are_blank_and_inside_kept(smear):
    cell = detect_cells(smear.image)[0]
    spec = input_spec("default-cell")
    own = [full_mask(cell, smear.image.shape)]
    ((out, transform),) = cell_only_rois(smear.image, [cell.bbox], spec, own)
    roi, same = extract_roi(smear.image, cell.bbox, size=64, margin=spec.margin)
    assert same == transform
    (mask,) = cell_masks(smear.image, [cell.bbox], own)
    centres = np.rint(transform.to_image(np.argwhere(np.ones(roi.shape[:2], bool)))).astype(int)
    rows, cols = mask.shape
    on_image = (centres >= 0).all(1) & (centres[:, 0] < rows) & (centres[:, 1] < cols)
    inside = np.zeros(len(centres), bool)
    inside[on_image] = mask[centres[on_image, 0], centres[on_image, 1]]
    inside = inside.reshape(roi.shape[:2])
    assert inside.any() and (~inside).any()
    # far from the mask's edge the ROI pixel is blank, deep inside it is the image's
    from scipy import ndimage as ndi

    margin = int(np.ceil(max(transform.scale))) + 1
    far_out = ndi.binary_erosion(~inside, iterations=margin, border_value=1)
    deep_in = ndi.binary_erosion(inside, iterations=margin)
    assert far_out.any() and deep_in.any()
    np.testing.assert_array_equal(out[far_out], BLANK)
    np.testing.assert_allclose(out[deep_in], roi[deep_in], atol=1e-6)


def test_the_mask_is_the_detector_mask_grown_by_two_pixels(smear):
    cell = detect_cells(smear.image)[0]
    own = full_mask(cell, smear.image.shape)
    (grown,) = cell_masks(smear.image, [cell.bbox], [own])
    assert GROW_PX == 2
    assert grown[own].all() and grown.sum() > own.sum()
    from scipy import ndimage as ndi

    distance = ndi.distance_transform_edt(~own)
    assert distance[grown].max() <= GROW_PX  # nothing farther than 2 px joins


def test_surroundings_do_not_change_the_input(smear):
    """The counterfactual the model is built for: repaint everything outside the cell's
    grown mask, and the input of a cell-only model is bit-identical."""
    spec = input_spec("default-cell")
    cells = detect_cells(smear.image)
    cell = cells[0]
    (grown,) = cell_masks(smear.image, [cell.bbox], [full_mask(cell, smear.image.shape)])
    other = make_smear(seed=4).image
    swapped = np.where(grown[..., None], smear.image, other)
    masks = [full_mask(cell, smear.image.shape)]
    before, _ = cell_inputs(smear.image, [cell.bbox], spec, masks)
    after, _ = cell_inputs(swapped, [cell.bbox], spec, masks)
    np.testing.assert_array_equal(before, after)
    # a model that keeps the context does see the change
    keep = input_spec("default")
    assert not np.array_equal(
        cell_inputs(smear.image, [cell.bbox], keep)[0], cell_inputs(swapped, [cell.bbox], keep)[0]
    )


def test_a_box_alone_finds_the_same_cell_as_the_field(smear):
    """classify(image, bbox=...) masks like training, which used the field's cells."""
    spec = input_spec("default-cell")
    batch, cells = field_inputs(smear.image, spec)
    alone, _ = cell_inputs(smear.image, [c.bbox for c in cells], spec)
    np.testing.assert_array_equal(batch, alone)


def test_a_box_without_a_detected_cell_keeps_the_box():
    blank = np.full((64, 64, 3), 230, np.uint8)
    (mask,) = cell_masks(blank, [(10, 12, 30, 40)])
    from skimage.morphology import isotropic_dilation

    box = np.zeros((64, 64), bool)
    box[10:30, 12:40] = True
    np.testing.assert_array_equal(mask, isotropic_dilation(box, GROW_PX))


@pytest.fixture(scope="module")
def cell_only_model():
    from napari_leukemia.model.architectures import build
    from napari_leukemia.model.classify import LoadedModel
    from napari_leukemia.model.metadata import ModelInfo

    keras_model = build("default-cell")
    return LoadedModel(keras_model, ModelInfo(input=input_spec("default-cell")))


def test_a_stack_of_rois_is_refused_for_a_cell_only_model(smear, cell_only_model):
    from napari_leukemia.explain import explain
    from napari_leukemia.model.classify import classify

    rois = [extract_roi(smear.image, c.bbox, size=64)[0] for c in detect_cells(smear.image)]
    with pytest.raises(ValueError, match="reads the cell alone"):
        classify(rois, cell_only_model)
    with pytest.raises(ValueError, match="reads the cell alone"):
        explain(rois, "gradient", cell_only_model)


def test_detected_cells_bring_their_own_masks(smear, cell_only_model):
    """Cells of `detect_cells` given as bbox use their own masks (no second detection),
    which are the masks a box alone finds: the same call and map either way."""
    from napari_leukemia.explain import explain
    from napari_leukemia.model.classify import classify
    from napari_leukemia.model.inputs import own_masks

    cells = detect_cells(smear.image)
    masks = own_masks(cells, smear.image.shape)
    assert [m.sum() for m in masks] == [c.mask.sum() for c in cells]
    assert own_masks(cells[0].bbox, smear.image.shape) is None  # a plain box has none
    by_cell = classify(smear.image, cell_only_model, bbox=cells[0])
    by_box = classify(smear.image, cell_only_model, bbox=cells[0].bbox)
    assert by_cell.probabilities == by_box.probabilities
    # in a batch the first cell's input is bit for bit the box's; the batched forward
    # pass may round differently from a batch of one (other GEMM blocking), no more
    spec = cell_only_model.info.input
    batched = cell_inputs(smear.image, [c.bbox for c in cells], spec, masks)[0]
    np.testing.assert_array_equal(
        batched[0], cell_inputs(smear.image, [cells[0].bbox], spec)[0][0]
    )
    batch = classify(smear.image, cell_only_model, bbox=cells)
    assert batch[0].probabilities == pytest.approx(by_box.probabilities, rel=1e-5, abs=1e-7)
    np.testing.assert_array_equal(
        explain(smear.image, "gradient", cell_only_model, bbox=cells[0]),
        explain(smear.image, "gradient", cell_only_model, bbox=cells[0].bbox),
    )


def test_growing_a_mask_locally_equals_dilating_the_whole_image():
    from skimage.morphology import isotropic_dilation

    from napari_leukemia.model.cell_context import GROW_PX, _grown

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        mask = np.zeros((60, 70), bool)
        r, c = rng.integers(0, 60), rng.integers(0, 70)  # touching the edges too
        mask[max(r - 5, 0) : r + rng.integers(1, 9), max(c - 4, 0) : c + rng.integers(1, 9)] = 1
        mask &= rng.random(mask.shape) > 0.2
        if mask.any():
            assert np.array_equal(_grown(mask), isotropic_dilation(mask, GROW_PX))
            checked += 1
    assert checked > 150
    assert not _grown(np.zeros((5, 5), bool)).any()  # no cell, no pixels


def test_integrated_gradients_starts_from_the_blank_slide_for_a_cell_only_model(
    smear, cell_only_model
):
    """The automatic baseline of a model that reads the cell alone is the blank slide:
    the blanked pixels get exactly no attribution. Black (0) gives them some."""
    from napari_leukemia.explain import explain_full

    cell = detect_cells(smear.image)[0]
    spec = cell_only_model.info.input
    x = cell_inputs(smear.image, [cell.bbox], spec)[0][0]
    blank = np.all(x == BLANK, axis=-1)
    assert 0 < blank.sum() < blank.size
    auto = explain_full(smear.image, "integrated_gradients", cell_only_model, bbox=cell.bbox)
    assert auto.params["baseline"] == BLANK
    assert not auto.input_map[blank].any() and auto.input_map[~blank].any()
    black = explain_full(
        smear.image, "integrated_gradients", cell_only_model, bbox=cell.bbox, baseline=0.0
    )
    assert black.input_map[blank].any()
