"""The main job on built-in defaults: the sample smear through every step.

With a display it opens napari with the sample smear and the plugin's widgets docked;
without one it runs the same steps and writes their outputs to a new folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_OUTPUT_ROOT = Path("napari-leukemia-output")


def new_output_dir(prefix: str = "demo", root: Path = DEFAULT_OUTPUT_ROOT) -> Path:
    """A fresh folder under `root` named by the time, so no earlier run is overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{prefix}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{prefix}-{stamp}-{suffix}"
    return path


def cells_table(cells) -> pd.DataFrame:
    """One row per detected cell: id, score, bbox and area."""
    rows = [
        {
            "cell": i + 1,
            "score": round(float(c.score), 4),
            "min_row": c.bbox[0],
            "min_col": c.bbox[1],
            "max_row": c.bbox[2],
            "max_col": c.bbox[3],
            "area": int(c.mask.sum()),
        }
        for i, c in enumerate(cells)
    ]
    columns = ["cell", "score", "min_row", "min_col", "max_row", "max_col", "area"]
    return pd.DataFrame(rows, columns=columns)


def run_headless(out_dir: Path | None = None, seed: int = 0) -> Path:
    """Run the demo steps on the synthetic sample and write PNGs and a CSV to `out_dir`."""
    from skimage import io

    from .cells import detect_cells
    from .preprocess import document000_pipeline
    from .roi import extract_roi
    from .synthetic import make_smear

    out = Path(out_dir) if out_dir is not None else new_output_dir()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already holds files; choose an empty or new folder.")
    out.mkdir(parents=True, exist_ok=True)

    smear = make_smear(seed=seed)
    io.imsave(out / "smear.png", smear.image, check_contrast=False)
    io.imsave(out / "labels_truth.png", smear.labels, check_contrast=False)
    pre = document000_pipeline(smear.image)[..., 0]
    io.imsave(out / "preprocessed.png", _to_uint8(pre), check_contrast=False)
    cells = detect_cells(smear.image)
    cells_table(cells).to_csv(out / "cells.csv", index=False)
    print(f"Detected {len(cells)} cells on the sample smear.")
    if cells:
        roi, transform = extract_roi(smear.image, cells[0].bbox)
        io.imsave(out / "roi_cell1.png", _to_uint8(roi), check_contrast=False)
        print(f"ROI of cell 1: {roi.shape}, origin {transform.origin}, scale {transform.scale}")
    _classify_explain_quantify(smear, cells, out)
    print(f"Outputs written to {out.resolve()}")
    return out


def _classify_explain_quantify(smear, cells, out: Path) -> None:
    """Bundled model on the field and on cell 1; two maps of cell 1 against the truth."""
    import json

    from skimage import io

    from .explain import explain_full
    from .model.classify import classify, load_model
    from .quantify import quantify_many

    model = load_model()
    results = {"field": classify(smear.image, model).as_dict()}
    if cells:
        results["cell 1"] = classify(smear.image, model, bbox=cells[0].bbox).as_dict()
    (out / "classification.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, result in results.items():
        print(f"{name}: {result['class']} (P malignant {result['malignant_probability']:.3f})")
    if not cells:
        return
    items = []
    for method in ("gradient_x_input", "lrp_epsilon", "grad_cam"):
        explanation = explain_full(smear.image, method, model, bbox=cells[0].bbox)
        np.save(out / f"map_{method}.npy", explanation.map)
        io.imsave(
            out / f"map_{method}.png", _to_uint8(_display(explanation.map)), check_contrast=False
        )
        items.append({"method": method, "relevance": explanation.map, "labels": smear.labels})
    table = quantify_many(items)
    table.to_csv(out / "relevance_by_label.csv", index=False)
    print(table[["method", "name", "relevant_fraction", "relevance_mass"]].round(3))


def _display(relevance: np.ndarray) -> np.ndarray:
    """Positive relevance scaled to [0, 1] for a quick look."""
    positive = np.clip(relevance, 0, None)
    top = float(positive.max())
    return positive / top if top > 0 else positive


def run_viewer(seed: int = 0):
    """Open napari with the sample smear, cells detected and the widgets docked.

    Returns the viewer and the docked widgets by name.
    """
    import napari

    from ._sample_data import smear_224
    from .cells import detect_cells

    viewer = napari.Viewer(title="napari-leukemia demo")
    for data, kwargs, kind in smear_224():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    image_layer = viewer.layers[0]
    widgets = {}
    for name in ("Preprocess", "Detect cells", "Extract ROI", "Classify cell", "Explain"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget("napari-leukemia", name)
        if hasattr(widgets[name], "image"):
            widgets[name].image.value = image_layer
    widgets["Detect cells"].show_cells(detect_cells(image_layer.data), image_layer)
    return viewer, widgets


def has_display() -> bool:
    """True when a GUI can open (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
