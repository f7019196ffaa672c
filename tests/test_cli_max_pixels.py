"""``--max-pixels`` of ``batch`` and ``predict``, and the OOD columns of the batch cells
table (issue 12): real model, real files, a real local Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from PIL import Image

import napari_leukemia as nl
from napari_leukemia.batch.reader import store_overview
from napari_leukemia.cli import build_parser, main
from napari_leukemia.images import MAX_PIXELS
from napari_leukemia.tiles import LARGE_PIXELS


@pytest.fixture(scope="module")
def smear_files(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("smears")
    paths = []
    for seed in (0, 1):
        path = folder / f"smear{seed}.png"
        Image.fromarray(nl.make_smear(seed=seed).image).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("command", ["batch", "predict"])
def test_max_pixels_is_parsed_with_0_and_none_for_no_limit(command, capsys):
    extra = ["--out", "s.zarr"] if command == "batch" else []
    parse = build_parser().parse_args
    default = LARGE_PIXELS if command == "batch" else MAX_PIXELS
    assert parse([command, "a.png", *extra]).max_pixels == default
    for text, value in (("5000", 5000), ("25_000_000", 25_000_000), ("0", None),
                        ("none", None), ("None", None)):  # fmt: skip
        assert parse([command, "a.png", *extra, "--max-pixels", text]).max_pixels == value
    for bad in ("-3", "many"):
        with pytest.raises(SystemExit):
            parse([command, "a.png", *extra, "--max-pixels", bad])
        assert "not a pixel count" in capsys.readouterr().err


def test_predict_max_pixels_reaches_classify(smear_files, capsys):
    image = str(smear_files[0])
    rows, cols = np.asarray(Image.open(image)).shape[:2]
    assert main(["predict", image, "--max-pixels", str(rows * cols - 1)]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and f"{rows * cols:,} pixels" in out and "batch" in out
    assert main(["predict", image, "--max-pixels", str(rows * cols)]) == 0
    assert "ERROR" not in capsys.readouterr().out


def test_batch_max_pixels_reaches_run_batch_and_cells_carry_ood_scores(smear_files, tmp_path):
    """``none``: both small images go the whole-image way; a limit below one image's
    size sends it the tiled way. The bundled model has an OOD fit, so every cell of
    either way has a finite OOD score and an unfamiliar flag."""
    files = [str(p) for p in smear_files]
    whole = tmp_path / "whole.zarr"
    assert main(["batch", *files, "--out", str(whole), "--workers", "1", "--quiet",
                 "--max-pixels", "none"]) == 0  # fmt: skip
    tiled = tmp_path / "tiled.zarr"
    assert main(["batch", files[0], "--out", str(tiled), "--workers", "1", "--quiet",
                 "--max-pixels", "1000"]) == 0  # fmt: skip
    for store, flag in ((whole, None), (tiled, True)):
        for name in ["smear0", "smear1"][: 2 if store == whole else 1]:
            attrs = zarr.open_group(str(store / "images" / name), mode="r").attrs
            assert attrs["napari_leukemia"].get("whole_slide") is flag
        cells = store_overview(store)["cells"]
        assert len(cells) >= 2 and set(cells["image"]) >= {"smear0"}
        assert np.isfinite(cells["ood_score"].to_numpy(float)).all()
        assert cells["unfamiliar"].map(type).eq(bool).all()
    assert set(store_overview(whole)["cells"]["image"]) == {"smear0", "smear1"}
