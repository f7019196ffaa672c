"""Tests of the seeded synthetic smear generator, the sample files and napari samples."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import io

from napari_leukemia.labels import MORPHOLOGY_CLASSES, MORPHOLOGY_COLORS
from napari_leukemia.synthetic import (
    SAMPLES,
    STAINS,
    SyntheticSmear,
    main,
    make_smear,
    sample_smear,
    write_samples,
)

CODE = {name: code for code, name in MORPHOLOGY_CLASSES.items()}
NUC, CYT, VAC, RBC, BG = (
    CODE["nucleus"],
    CODE["cytoplasm"],
    CODE["vacuole"],
    CODE["red blood cell"],
    CODE["background"],
)
EIGHT = np.ones((3, 3), bool)
SEEDS = range(12)
REPO_SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def _assert_same(a: SyntheticSmear, b: SyntheticSmear) -> None:
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.cell_bboxes == b.cell_bboxes


# ---------------------------------------------------------------- determinism, types


def test_same_seed_same_output():
    _assert_same(make_smear(3), make_smear(3))
    kwargs = dict(shape=(120, 160), n_leukocytes=2, stain="pink", noise=0.03)
    _assert_same(make_smear(5, **kwargs), make_smear(5, **kwargs))


def test_different_seeds_differ():
    a, b = make_smear(1), make_smear(2)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, b.image)


def test_global_numpy_state_not_used():
    np.random.seed(0)  # noqa: NPY002 - the legacy global state must not matter
    a = make_smear(8)
    np.random.seed(123)  # noqa: NPY002
    np.random.random(10)  # noqa: NPY002
    _assert_same(a, make_smear(8))


@pytest.mark.parametrize("shape", [(224, 224), (100, 150), (480, 640)])
def test_shapes_and_dtypes(shape):
    diameter = 170.0 if shape[0] > 400 else 36.0
    smear = make_smear(0, shape=shape, n_leukocytes=1, cell_diameter=diameter)
    assert smear.image.shape == (*shape, 3)
    assert smear.image.dtype == np.uint8
    assert smear.labels.shape == shape
    assert smear.labels.dtype == np.uint8
    assert isinstance(smear.cell_bboxes, list)
    assert all(isinstance(v, int) for box in smear.cell_bboxes for v in box)


def test_leukocyte_count():
    for seed in SEEDS:
        assert len(make_smear(seed, n_leukocytes=2).cell_bboxes) == 2
        assert 1 <= len(make_smear(seed, n_leukocytes=(1, 3)).cell_bboxes) <= 3
    empty = make_smear(0, n_leukocytes=0)
    assert empty.cell_bboxes == []
    assert not np.isin(empty.labels, [NUC, CYT, VAC]).any()


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("stain", [*sorted(STAINS), None])
@pytest.mark.parametrize("seed", SEEDS)
def test_label_codes(seed, stain):
    labels = make_smear(seed, stain=stain).labels
    present = set(np.unique(labels).tolist())
    assert present <= set(MORPHOLOGY_CLASSES)
    assert BG in present
    assert NUC in present
    assert CYT in present
    assert RBC in present


@pytest.mark.parametrize("seed", SEEDS)
def test_bboxes_enclose_each_leukocyte(seed):
    smear = make_smear(seed, n_leukocytes=(1, 3))
    leuko = np.isin(smear.labels, [NUC, CYT, VAC])
    comp, n = ndi.label(leuko, EIGHT)
    # Leukocytes do not touch each other: one 8-connected component per cell.
    assert n == len(smear.cell_bboxes) >= 1
    slices = ndi.find_objects(comp)
    seen = set()
    for r0, c0, r1, c1 in smear.cell_bboxes:
        assert 0 <= r0 < r1 <= smear.labels.shape[0]
        assert 0 <= c0 < c1 <= smear.labels.shape[1]
        box = smear.labels[r0:r1, c0:c1]
        assert (box == NUC).any()
        ids = set(np.unique(comp[r0:r1, c0:c1][box == NUC]).tolist())
        assert len(ids) == 1
        (cid,) = ids
        seen.add(cid)
        rs, cs = slices[cid - 1]
        # the box is exactly the bounding box of its leukocyte's labels
        assert (rs.start, cs.start, rs.stop, cs.stop) == (r0, c0, r1, c1)
    assert len(seen) == n


@pytest.mark.parametrize("seed", SEEDS)
def test_nucleus_inside_cell(seed):
    labels = make_smear(seed).labels
    # the nucleus never touches background or red cells: a cytoplasm rim surrounds it
    ring = ndi.binary_dilation(labels == NUC, EIGHT) & (labels != NUC)
    assert not np.isin(labels[ring], [BG, RBC]).any()


def test_vacuoles_lie_in_cytoplasm():
    n_vacuoles = 0
    for seed in range(30):
        labels = make_smear(seed).labels
        comp, n = ndi.label(labels == VAC, EIGHT)
        n_vacuoles += n
        for i in range(1, n + 1):
            part = comp == i
            ring = ndi.binary_dilation(part, EIGHT) & ~part
            neighbours = set(np.unique(labels[ring]).tolist())
            assert CYT in neighbours
            assert BG not in neighbours
            assert RBC not in neighbours
    assert n_vacuoles > 0, "no vacuoles drawn in 30 seeds: the check above tested nothing"


def test_vacuoles_off():
    for seed in range(10):
        assert not (make_smear(seed, vacuoles=False).labels == VAC).any()


def test_nucleoli_are_drawn_not_labelled():
    # Nucleoli change pixels only: all geometry is drawn before any rendering, so
    # without vacuoles the label image does not depend on nucleoli.
    with_nucleoli = make_smear(4, nucleoli=True, vacuoles=False)
    without = make_smear(4, nucleoli=False, vacuoles=False)
    np.testing.assert_array_equal(with_nucleoli.labels, without.labels)
    assert with_nucleoli.cell_bboxes == without.cell_bboxes
    assert not np.array_equal(with_nucleoli.image, without.image)


# ---------------------------------------------------------------- colours


@pytest.mark.parametrize("stain", sorted(STAINS))
@pytest.mark.parametrize("seed", SEEDS)
def test_colour_statistics(seed, stain):
    smear = make_smear(seed, stain=stain)
    img = smear.image.astype(float)
    lab = smear.labels

    def brightness(code):
        return img[lab == code].mean()

    def red_minus_blue(code):
        return (img[..., 0] - img[..., 2])[lab == code].mean()

    assert brightness(NUC) < brightness(CYT)
    assert brightness(NUC) < brightness(RBC)
    assert brightness(NUC) < brightness(BG)
    assert brightness(RBC) < brightness(BG)
    assert red_minus_blue(RBC) > red_minus_blue(NUC)


def test_stains_differ_and_seeds_vary_colour():
    lilac = make_smear(0, stain="lilac")
    pink = make_smear(0, stain="pink")
    # pink red cells are redder than lilac ones
    rb = [
        (s.image[..., 0].astype(int) - s.image[..., 2])[s.labels == RBC].mean()
        for s in (lilac, pink)
    ]
    assert rb[1] > rb[0] + 10
    # per-seed stain jitter: the background colour changes between seeds
    smears = [make_smear(seed, stain="lilac") for seed in range(5)]
    backgrounds = np.array([s.image[s.labels == BG].mean(0) for s in smears])
    assert np.ptp(backgrounds, axis=0).max() > 2


def test_noise_and_blur():
    clean = make_smear(2, noise=0.0)
    noisy = make_smear(2, noise=0.05)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    diff = noisy.image.astype(float) - clean.image
    assert 8 < diff.std() < 18
    # optical blur: no hard jumps between neighbouring background/red-cell pixels
    assert np.abs(np.diff(clean.image.astype(int), axis=1)).max() < 120


# ---------------------------------------------------------------- errors, speed


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stain="neon"),
        dict(shape=(8, 8)),
        dict(n_leukocytes=(3, 1)),
        dict(n_leukocytes=-1),
        dict(cell_diameter=2),
        dict(rbc_density=-0.1),
        dict(noise=-1),
        dict(shape=(64, 64), n_leukocytes=12, cell_diameter=30),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_smear(0, **kwargs)


def test_fast_enough():
    make_smear(0)
    best = min(_timed(lambda s=s: make_smear(s)) for s in range(5))
    # the target is < 100 ms on a laptop; leave room for a busy CI machine
    assert best < 0.25


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------- sample files


def test_write_samples_roundtrip_and_refuses_overwrite(tmp_path):
    paths = write_samples(tmp_path)
    expected = [tmp_path / f"{stem}{suffix}.png" for stem in SAMPLES for suffix in ("", "_labels")]
    assert paths == expected
    for stem in SAMPLES:
        smear = sample_smear(stem)
        image = io.imread(tmp_path / f"{stem}.png")
        labels = io.imread(tmp_path / f"{stem}_labels.png")
        assert image.dtype == np.uint8 and labels.dtype == np.uint8
        np.testing.assert_array_equal(image, smear.image)
        np.testing.assert_array_equal(labels, smear.labels)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    with pytest.raises(FileExistsError):
        write_samples(tmp_path, seed=99)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before

    write_samples(tmp_path, seed=99, overwrite=True)
    image = io.imread(tmp_path / "smear_224.png")
    np.testing.assert_array_equal(image, sample_smear("smear_224", seed=99).image)


def test_write_samples_refuses_if_any_target_exists(tmp_path):
    keep = tmp_path / "smear_640x480_labels.png"
    keep.write_bytes(b"user data")
    with pytest.raises(FileExistsError):
        write_samples(tmp_path)
    assert keep.read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == [keep.name]


def test_sample_sizes():
    small = sample_smear("smear_224")
    assert small.image.shape == (224, 224, 3)
    assert 2 <= len(small.cell_bboxes) <= 3
    for r0, c0, r1, c1 in small.cell_bboxes:
        assert 28 <= max(r1 - r0, c1 - c0) <= 50
    big = sample_smear("smear_640x480")
    assert big.image.shape == (480, 640, 3)
    assert 1 <= len(big.cell_bboxes) <= 2
    for r0, c0, r1, c1 in big.cell_bboxes:
        assert 140 <= max(r1 - r0, c1 - c0) <= 230
    with pytest.raises(ValueError):
        sample_smear("nope")


@pytest.mark.skipif(not REPO_SAMPLES.is_dir(), reason="repository sample_data/ not present")
def test_shipped_files_match_generator():
    for stem in SAMPLES:
        image_path = REPO_SAMPLES / f"{stem}.png"
        if not image_path.exists():
            pytest.skip(f"{image_path} not generated yet")
        smear = sample_smear(stem)
        np.testing.assert_array_equal(io.imread(image_path), smear.image)
        np.testing.assert_array_equal(io.imread(REPO_SAMPLES / f"{stem}_labels.png"), smear.labels)


def test_cli(tmp_path, capsys):
    out = tmp_path / "samples"
    assert main(["--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{suffix}.png" for stem in SAMPLES for suffix in ("", "_labels")
    )
    before = (out / "smear_224.png").read_bytes()
    assert main(["--out", str(out), "--seed", "5"]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert (out / "smear_224.png").read_bytes() == before
    assert main(["--out", str(out), "--seed", "5", "--overwrite"]) == 0
    assert (out / "smear_224.png").read_bytes() != before
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_cli_module_entry(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "napari_leukemia.synthetic", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "smear_224_labels.png").exists()


def test_core_imports_no_napari_or_qt():
    code = (
        "import sys, napari_leukemia.synthetic, napari_leukemia._sample_data\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'tensorflow')]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- napari samples


@pytest.mark.parametrize(
    ("func_name", "stem"), [("smear_224", "smear_224"), ("smear_640x480", "smear_640x480")]
)
def test_sample_data_layer_data(func_name, stem):
    pytest.importorskip("napari")
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    from napari_leukemia import _sample_data

    layers = getattr(_sample_data, func_name)()
    assert isinstance(layers, list) and len(layers) == 2
    (image, image_kwargs, image_type), (labels, label_kwargs, label_type) = layers
    assert (image_type, label_type) == ("image", "labels")
    smear = sample_smear(stem)
    np.testing.assert_array_equal(image, smear.image)
    np.testing.assert_array_equal(labels, smear.labels)
    assert image_kwargs["name"] == SAMPLES[stem][0]
    assert label_kwargs["name"] == "morphology labels (truth)"
    assert label_kwargs["opacity"] == pytest.approx(0.4)
    cmap = label_kwargs["colormap"]
    assert isinstance(cmap, DirectLabelColormap)
    for code, rgba in MORPHOLOGY_COLORS.items():
        np.testing.assert_allclose(cmap.color_dict[code], rgba, atol=1e-6)
    features = label_kwargs["features"]
    assert isinstance(features, pd.DataFrame)
    assert list(features["index"]) == list(MORPHOLOGY_CLASSES)
    assert list(features["name"]) == list(MORPHOLOGY_CLASSES.values())


def test_sample_data_builds_napari_layers():
    napari = pytest.importorskip("napari")
    from napari_leukemia._sample_data import smear_224

    (image, image_kwargs, _), (labels, label_kwargs, _) = smear_224()
    image_layer = napari.layers.Image(image, **image_kwargs)
    label_layer = napari.layers.Labels(labels, **label_kwargs)
    assert image_layer.rgb
    assert label_layer.name == "morphology labels (truth)"
    assert label_layer.features["name"].tolist() == list(MORPHOLOGY_CLASSES.values())
    np.testing.assert_allclose(
        label_layer.colormap.map(np.array([NUC]))[0], MORPHOLOGY_COLORS[NUC]
    )
