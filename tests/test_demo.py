"""The README's main job, headless: every output is written and nothing is overwritten."""

import json

import pandas as pd
import pytest

from napari_leukemia.cli import main


def test_headless_demo_writes_all_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--headless", "--out", str(out)]) == 0
    expected = {
        "smear.png",
        "labels_truth.png",
        "preprocessed.png",
        "cells.csv",
        "roi_cell1.png",
        "classification.json",
        "relevance_by_label.csv",
    }
    assert expected <= {p.name for p in out.iterdir()}
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) >= 1 and (cells["max_row"] > cells["min_row"]).all()
    result = json.loads((out / "classification.json").read_text())
    assert sum(result["field"]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    table = pd.read_csv(out / "relevance_by_label.csv")
    assert set(table["method"]) == {"gradient_x_input", "lrp_epsilon", "grad_cam"}
    for _, rows in table.groupby("method"):
        assert rows["relevant_fraction"].sum() == pytest.approx(1.0, abs=1e-6)
    assert "Outputs written to" in capsys.readouterr().out


def test_demo_refuses_a_folder_with_files(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--headless", "--out", str(tmp_path)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
