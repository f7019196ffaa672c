"""Tests for `napari_leukemia.cells`: white-cell detection on smear fields."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure
from skimage.draw import disk

from napari_leukemia.cells import Cell, cells_to_labels, detect_cells
from napari_leukemia.images import ImageError

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"

BACKGROUND = (236, 233, 238)  # pale slide
RBC_PINK = (214, 148, 158)  # eosin-pink red cell
RBC_CENTRE = (226, 190, 196)  # its paler centre
NUCLEUS = (112, 62, 172)  # dark violet nucleus
PALE_NUCLEUS = (140, 100, 185)  # a more weakly stained nucleus
CYTOPLASM_BLUE = (172, 182, 232)  # lymphoblast rim
CYTOPLASM_LILAC = (200, 182, 222)  # neutrophil cytoplasm

RBCS = [(40, 40), (40, 220), (160, 40), (165, 225), (30, 130), (175, 130)]


def _paint(image, centre, radius, colour):
    rr, cc = disk(centre, radius, shape=image.shape[:2])
    image[rr, cc] = colour


def _finish(image, noise=1.5, seed=0):
    """Soften edges like optics do and add a little sensor noise; return uint8."""
    out = ndi.gaussian_filter(image.astype(float), (1.0, 1.0, 0))
    if noise:
        out += np.random.default_rng(seed).normal(0, noise, out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _field(shape=(200, 260), rbcs=RBCS):
    image = np.empty(shape + (3,), float)
    image[...] = BACKGROUND
    for centre in rbcs:
        _paint(image, centre, 13, RBC_PINK)
        _paint(image, centre, 5, RBC_CENTRE)
    return image


def _blast(image, centre, radius=26, nucleus=NUCLEUS):
    """A lymphoblast: violet nucleus with a thin light-blue cytoplasm rim."""
    _paint(image, centre, radius, CYTOPLASM_BLUE)
    _paint(image, centre, radius - 6, nucleus)


def _disc_box(centre, radius, shape):
    mask = np.zeros(shape, bool)
    rr, cc = disk(centre, radius, shape=shape)
    mask[rr, cc] = True
    return measure.regionprops(mask.astype(np.uint8))[0].bbox


def _iou(a, b):
    rows = min(a[2], b[2]) - max(a[0], b[0])
    cols = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(rows, 0) * max(cols, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _inside(cell: Cell, point) -> bool:
    r, c = point
    r0, c0, r1, c1 = cell.bbox
    return r0 <= r < r1 and c0 <= c < c1 and bool(cell.mask[r - r0, c - c0])


@pytest.fixture
def one_blast():
    image = _field()
    _blast(image, (100, 130))
    return _finish(image), _disc_box((100, 130), 26, image.shape[:2])


# ----------------------------------------------------------------------------- synthetic


def test_one_blast_among_red_cells(one_blast):
    image, true_box = one_blast
    cells = detect_cells(image)
    assert len(cells) == 1
    cell = cells[0]
    assert _iou(cell.bbox, true_box) >= 0.8
    r0, c0, r1, c1 = cell.bbox
    assert cell.mask.dtype == bool
    assert cell.mask.shape == (r1 - r0, c1 - c0)
    assert cell.mask.any()
    # the mask fills its box: every row and column of the box holds cell pixels
    assert cell.mask.any(axis=1).all() and cell.mask.any(axis=0).all()
    assert 0.0 <= cell.score <= 1.0
    assert np.allclose(cell.centroid, (100, 130), atol=2.0)
    assert abs(cell.area - np.pi * 26**2) < 0.2 * np.pi * 26**2
    for rbc in RBCS:
        assert not _inside(cell, rbc)


def test_red_cells_alone_are_not_detected():
    assert detect_cells(_finish(_field())) == []


@pytest.mark.parametrize("waist", [False, True], ids=["round", "waisted"])
def test_two_lobes_of_one_neutrophil_make_one_cell(waist):
    """Two nuclear lobes 6 px apart in one lilac cytoplasm are one cell.

    The "waisted" cytoplasm (two overlapping discs) has a neck, as real cells often do
    when a red cell overlaps them; the lobes must still not be split apart.
    """
    image = _field()
    if waist:
        _paint(image, (100, 114), 22, CYTOPLASM_LILAC)
        _paint(image, (100, 146), 22, CYTOPLASM_LILAC)
    else:
        _paint(image, (100, 130), 30, CYTOPLASM_LILAC)
    _paint(image, (100, 117), 10, NUCLEUS)
    _paint(image, (100, 143), 10, NUCLEUS)
    cells = detect_cells(_finish(image))
    assert len(cells) == 1
    cell = cells[0]
    assert _inside(cell, (100, 117)) and _inside(cell, (100, 143))
    r0, c0, r1, c1 = cell.bbox
    assert c1 - c0 >= 55  # spans both lobes and the cytoplasm around them


def test_two_cells_far_apart_are_two_cells_sorted_by_score():
    image = _field(shape=(200, 360), rbcs=[(40, 40), (170, 40), (40, 320), (170, 320)])
    _blast(image, (100, 90), nucleus=PALE_NUCLEUS)
    _blast(image, (100, 270), nucleus=NUCLEUS)
    cells = detect_cells(_finish(image), min_score=0.0)
    assert len(cells) == 2
    assert cells[0].score >= cells[1].score
    # the strongly stained cell is the more confident one
    assert _inside(cells[0], (100, 270)) and _inside(cells[1], (100, 90))


def test_touching_blasts_are_split():
    """Two overlapping blasts (centres 44 px apart, radius 26): two cells."""
    image = _field(shape=(200, 300), rbcs=[(30, 30), (170, 270), (30, 270), (170, 30), (35, 150)])
    _blast(image, (100, 128), radius=26)
    _blast(image, (100, 172), radius=26)
    cells = detect_cells(_finish(image))
    assert len(cells) == 2
    assert {_inside(c, (100, 118)) for c in cells} == {True, False}
    assert {_inside(c, (100, 182)) for c in cells} == {True, False}
    assert not any(_inside(c, (100, 118)) and _inside(c, (100, 182)) for c in cells)


def test_min_score_filters_and_is_checked(one_blast):
    image, _ = one_blast
    everything = detect_cells(image, min_score=0.0)
    assert len(detect_cells(image, min_score=1.0)) <= len(everything)
    with pytest.raises(ValueError, match="min_score"):
        detect_cells(image, min_score=1.5)


@pytest.mark.parametrize(
    "image",
    [
        np.full((120, 160, 3), 255, np.uint8),  # blank white slide
        np.zeros((120, 160), np.uint8),  # constant gray
        np.full((120, 160, 3), RBC_PINK, np.uint8),  # noise-free pink
        np.full((120, 160, 4), 0, np.uint8),  # fully transparent RGBA
    ],
    ids=["white", "constant", "pink", "transparent"],
)
def test_empty_fields_give_no_cells(image):
    assert detect_cells(image) == []


def test_pure_noise_gives_no_confident_cells():
    noise = np.random.default_rng(1).normal(230, 3, (150, 150, 3))
    assert detect_cells(np.clip(noise, 0, 255).astype(np.uint8)) == []


def _as_rgba(image):
    return np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])


@pytest.mark.parametrize(
    "convert",
    [
        _as_rgba,
        lambda im: im.astype(np.uint16) * 257,
        lambda im: im.astype(np.float32) / 255.0,
    ],
    ids=["rgba", "uint16", "float01"],
)
def test_input_types_are_accepted(one_blast, convert):
    image, true_box = one_blast
    cells = detect_cells(convert(image))
    assert len(cells) == 1
    assert _iou(cells[0].bbox, true_box) >= 0.8


def test_float_image_with_8_bit_values_is_accepted(one_blast):
    """Floats in [0, 255] are read as 8-bit values, so colours are kept exactly."""
    image, true_box = one_blast
    as_float = detect_cells(image.astype(np.float64))
    as_uint8 = detect_cells(image)
    assert len(as_float) == 1
    assert as_float[0].bbox == as_uint8[0].bbox
    assert _iou(as_float[0].bbox, true_box) >= 0.8


def test_grayscale_input_finds_the_dark_nucleus(one_blast):
    image, _ = one_blast
    gray = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    cells = detect_cells(gray)
    assert len(cells) >= 1
    assert _inside(cells[0], (100, 130))
    for rbc in RBCS:
        assert not any(_inside(c, rbc) for c in cells)


def test_large_field_is_mapped_back_to_full_resolution():
    """A field bigger than the working size: boxes come back in full-size pixels."""
    image = _field(shape=(480, 640), rbcs=[(80, 80), (400, 560), (90, 540)])
    for centre in [(80, 80), (400, 560), (90, 540)]:
        _paint(image, centre, 40, RBC_PINK)
        _paint(image, centre, 15, RBC_CENTRE)
    _blast(image, (250, 300), radius=70)
    cells = detect_cells(_finish(image))
    assert len(cells) == 1
    assert _iou(cells[0].bbox, _disc_box((250, 300), 70, (480, 640))) >= 0.8


def test_stacks_and_channel_axes_are_refused(one_blast):
    image, _ = one_blast
    with pytest.raises(ImageError):
        detect_cells(np.stack([image, image]))
    with pytest.raises(ImageError):
        detect_cells(image[..., :1])


def test_cells_of_the_synthetic_sample_smears_are_found():
    """The shipped synthetic smears (exact cell boxes known) are detected, few extras."""
    synthetic = pytest.importorskip("napari_leukemia.synthetic")
    n_true = n_found = n_extra = 0
    for seed in range(12):
        smear = synthetic.make_smear(seed=seed)
        found = [c.bbox for c in detect_cells(smear.image)]
        matched = _greedy_matches(list(smear.cell_bboxes), found)
        n_true += len(smear.cell_bboxes)
        n_found += matched
        n_extra += len(found) - matched
    assert n_found >= 0.9 * n_true
    assert n_extra <= 2


# ----------------------------------------------------------------------- cells_to_labels


def test_cells_to_labels_round_trip():
    image = _field(shape=(200, 360), rbcs=[(40, 40), (170, 320)])
    _blast(image, (100, 90))
    _blast(image, (100, 270))
    cells = detect_cells(_finish(image))
    assert len(cells) == 2
    labels = cells_to_labels(cells, image.shape)
    assert labels.dtype == np.int32 and labels.shape == image.shape[:2]
    assert set(np.unique(labels)) == {0, 1, 2}
    for region in measure.regionprops(labels):
        cell = cells[region.label - 1]
        assert region.bbox == cell.bbox
        np.testing.assert_array_equal(region.image, cell.mask)


def test_cells_to_labels_overlap_and_clipping():
    mask = np.ones((4, 4), bool)
    first = Cell(bbox=(0, 0, 4, 4), mask=mask, score=0.9)
    second = Cell(bbox=(2, 2, 6, 6), mask=mask, score=0.5)
    outside = Cell(bbox=(8, 8, 12, 12), mask=mask, score=0.1)  # partly past the edge
    labels = cells_to_labels([first, second, outside], (10, 10))
    assert labels[3, 3] == 1  # the earlier cell keeps overlapping pixels
    assert labels[5, 5] == 2
    assert labels[9, 9] == 3
    assert (labels == 3).sum() == 4
    with pytest.raises(ValueError, match="mask shape"):
        cells_to_labels([Cell(bbox=(0, 0, 3, 3), mask=mask, score=1.0)], (10, 10))


def test_cell_properties():
    mask = np.zeros((5, 7), bool)
    mask[1:4, 2:5] = True
    cell = Cell(bbox=(10, 20, 15, 27), mask=mask, score=0.5)
    assert cell.area == 9
    assert cell.centroid == pytest.approx((12.0, 23.0))


# ----------------------------------------------------------------------------- real data


def _bccd_wbc_boxes(xml_path):
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        if (obj.findtext("name") or "").strip() == "WBC":
            bb = obj.find("bndbox")
            x0, y0, x1, y1 = (int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((y0 - 1, x0 - 1, y1, x1))
    return boxes


def _greedy_matches(truth, found, threshold=0.5):
    pairs = sorted(
        ((_iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    used_t, used_f = set(), set()
    for iou, i, j in pairs:
        if iou < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def test_bccd_recall_on_a_fixed_sample():
    """At least 85 % of annotated WBC boxes found at IoU >= 0.5 on 40+ real BCCD fields."""
    from skimage import io

    bccd = DATA / "bccd"
    if not (bccd / "Annotations").is_dir():
        pytest.skip(f"BCCD data not found at {bccd.resolve()}")
    xmls = sorted((bccd / "Annotations").glob("*.xml"))[::7]
    n_truth = n_matched = 0
    for xml_path in xmls:
        image = io.imread(bccd / "JPEGImages" / f"{xml_path.stem}.jpg")
        truth = _bccd_wbc_boxes(xml_path)
        found = [c.bbox for c in detect_cells(image)]
        n_truth += len(truth)
        n_matched += _greedy_matches(truth, found)
    assert len(xmls) >= 40
    assert n_matched / n_truth >= 0.85, f"recall {n_matched}/{n_truth}"


def test_all4_fields_have_detections():
    """Nearly every 4-class ALL field (several blasts each) yields at least one cell."""
    from skimage import io

    all4 = DATA / "all4"
    if not all4.is_dir():
        pytest.skip(f"all4 data not found at {all4.resolve()}")
    files = sorted(all4.glob("*/*.jpg"))[::60]
    found = [len(detect_cells(io.imread(f))) > 0 for f in files]
    assert len(files) >= 40
    assert np.mean(found) >= 0.9
