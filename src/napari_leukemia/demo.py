"""The main job on built-in defaults: the sample smear through every step.

With a display it opens napari with the sample smear and the plugin's widgets docked;
without one it runs the same steps and writes their outputs to a new folder. Both draw
the same field: the shipped ``smear_224`` sample (:func:`demo_smear`), with ``--seed``
replacing its seed in both.

Headless outputs (figures are RGB PNGs drawn by :mod:`napari_leukemia.figures`; the raw
data sit next to them, unscaled):

========================  ================================================================
``summary.png``           the chain on one page: numbered cells, preprocessed image, ROI,
                          class probabilities, the maps, relevance by label
``smear.png``             the sample field as it is (RGB)
``labels_truth.png``      figure: smear and its exact labels in morphology colours, legend
``labels_truth_raw.png``  raw label codes 1–5 (8-bit gray, names stored inside; read it
                          with :func:`napari_leukemia.labels.load_labels`)
``preprocessed.png``      document 000's grayscale pipeline, 8-bit
``cells.csv``             one row per detected cell (number, score, bbox, area)
``roi_cell1.png``         224×224 ROI of cell 1 (data, no axes)
``classification.json``   the bundled model's call on the field and on cell 1
``map_<method>.png``      figure: cell 1's ROI and the map over it, colour bar, title
``map_<method>.npy``      the map exactly as ``napari_leukemia.explain`` returns it
                          (float32, image grid, 0 outside the ROI)
``relevance_by_label.csv``  overlap of each map with the exact labels (``quantify_many``)
========================  ================================================================
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_OUTPUT_ROOT = Path("napari-leukemia-output")
#: The shipped sample the demo runs on, headless and in the viewer.
DEMO_SAMPLE = "smear_224"
#: Attribution methods the headless demo explains cell 1 with.
DEMO_METHODS = ("gradient_x_input", "lrp_epsilon", "grad_cam")


def new_output_dir(prefix: str = "demo", root: Path = DEFAULT_OUTPUT_ROOT) -> Path:
    """A fresh folder under `root` named by the time, so no earlier run is overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{prefix}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{prefix}-{stamp}-{suffix}"
    return path


def demo_smear(seed: int = 0):
    """The demo's field: the shipped sample ``smear_224``, generated with `seed`.

    Seed 0 is the shipped sample itself (``sample_data/smear_224.png``). The headless and
    the viewer demo both call this, so they show the same smear for the same seed.
    """
    from .synthetic import sample_smear

    return sample_smear(DEMO_SAMPLE, seed=seed)


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
    """Run the demo steps on the sample smear; write figures and raw data to `out_dir`."""
    from .cells import detect_cells
    from .preprocess import document000_pipeline

    out = _empty_output_dir(out_dir)
    smear = demo_smear(seed)
    preprocessed = document000_pipeline(smear.image)[..., 0]
    cells = detect_cells(smear.image)
    _write_field(out, smear, preprocessed, cells)
    print(f"Detected {len(cells)} cells on the sample smear.")
    roi = _write_roi(out, smear.image, cells)
    results = _classify(smear.image, cells, out)
    if cells:
        explanations = _explain(smear.image, cells[0].bbox, out)
        table = _quantify(explanations, smear.labels, out)
        _write_summary(out, smear.image, preprocessed, cells, roi, results, explanations, table)
    print(f"Outputs written to {out.resolve()}")
    return out


def _empty_output_dir(out_dir: Path | None) -> Path:
    """`out_dir` (or a new timestamped folder), created; refuse one that holds files."""
    out = Path(out_dir) if out_dir is not None else new_output_dir()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already holds files; choose an empty or new folder.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_field(out: Path, smear, preprocessed: np.ndarray, cells) -> None:
    """The smear, its labels (raw codes and a coloured figure), preprocessing, cells."""
    from skimage import io

    from .figures import render_labels_figure
    from .labels import save_labels

    io.imsave(out / "smear.png", smear.image, check_contrast=False)
    save_labels(out / "labels_truth_raw.png", smear.labels)
    render_labels_figure(out / "labels_truth.png", smear.image, smear.labels)
    io.imsave(out / "preprocessed.png", _to_uint8(preprocessed), check_contrast=False)
    cells_table(cells).to_csv(out / "cells.csv", index=False)


def _write_roi(out: Path, image: np.ndarray, cells) -> np.ndarray | None:
    """Cell 1's 224×224 ROI as a PNG (for a look; the model cuts its own input)."""
    from skimage import io

    from .roi import extract_roi

    if not cells:
        return None
    roi, transform = extract_roi(image, cells[0].bbox)
    io.imsave(out / "roi_cell1.png", _to_uint8(roi), check_contrast=False)
    print(f"ROI of cell 1: {roi.shape}, origin {transform.origin}, scale {transform.scale}")
    return roi


def _classify(image: np.ndarray, cells, out: Path) -> dict:
    """The bundled model's call on the field and on cell 1, written as JSON."""
    import json

    from .model.classify import classify, load_model

    model = load_model()
    results = {"field": classify(image, model).as_dict()}
    if cells:
        results["cell 1"] = classify(image, model, bbox=cells[0].bbox).as_dict()
    (out / "classification.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, result in results.items():
        print(f"{name}: {result['class']} (P malignant {result['malignant_probability']:.3f})")
    return results


def _explain(image: np.ndarray, bbox, out: Path) -> list:
    """Each demo method's map of the cell in `bbox`: raw ``.npy`` plus a readable figure."""
    from .explain import explain_full
    from .figures import render_map_figure
    from .model.classify import load_model

    model = load_model()
    explanations = []
    for method in DEMO_METHODS:
        explanation = explain_full(image, method, model, bbox=bbox)
        np.save(out / f"map_{method}.npy", explanation.map)
        render_map_figure(out / f"map_{method}.png", image, _map_view(explanation))
        explanations.append(explanation)
    return explanations


def _map_view(explanation):
    """What the figures need from an `Explanation`: map, names, sign and ROI window."""
    from .explain import method_info
    from .figures import MapView

    transform = explanation.transform
    rows, cols = explanation.input_map.shape
    top, left = (int(round(v)) for v in transform.origin)
    bottom = top + int(round(transform.scale[0] * rows))
    right = left + int(round(transform.scale[1] * cols))
    return MapView(
        relevance=explanation.map,
        method=explanation.method,
        method_label=method_info(explanation.method).label,
        target_name=explanation.target_name,
        signed=explanation.signed,
        window=(top, left, bottom, right),
    )


def _quantify(explanations: list, labels: np.ndarray, out: Path) -> pd.DataFrame:
    """Overlap of every map with the exact labels (thesis protocol), written as CSV."""
    from .quantify import quantify_many

    items = [{"method": e.method, "relevance": e.map, "labels": labels} for e in explanations]
    table = quantify_many(items)
    table.to_csv(out / "relevance_by_label.csv", index=False)
    print(table[["method", "name", "relevant_fraction", "relevance_mass"]].round(3))
    return table


def _write_summary(out, image, preprocessed, cells, roi, results, explanations, table) -> None:
    """``summary.png``: the whole chain for cell 1 on one page."""
    from .figures import ChainSummary, render_summary

    cell = results["cell 1"]
    chain = ChainSummary(
        smear=image,
        preprocessed=preprocessed,
        cell_bboxes=[c.bbox for c in cells],
        roi=roi,
        probabilities=cell["probabilities"],
        call=f"{cell['class']}, P(malignant) {cell['malignant_probability']:.2f}",
        views=[_map_view(e) for e in explanations],
        relevance_table=table,
    )
    render_summary(out / "summary.png", chain)


DEMO_WIDGETS = (
    "Preprocess",
    "Detect cells",
    "Extract ROI",
    "Classify cell",
    "Explain",
    "Sanity checks",
)


def run_viewer(seed: int = 0):
    """Open napari with the demo smear (same as headless), cells detected, widgets docked.

    Returns the viewer and the docked widgets by name.
    """
    import napari

    from .cells import detect_cells

    viewer = napari.Viewer(title="napari-leukemia demo")
    image_layer = _add_demo_smear(viewer, seed)
    widgets = {}
    # one tabbed dock, so every widget fits a 1600x1000 screen beside a usable canvas
    for i, name in enumerate(DEMO_WIDGETS):
        _, widgets[name] = viewer.window.add_plugin_dock_widget(
            "napari-leukemia", name, tabify=i > 0
        )
        if hasattr(widgets[name], "image"):
            widgets[name].image.value = image_layer
    widgets["Detect cells"].show_cells(
        detect_cells(image_layer.data), image_layer, image_layer.data
    )
    return viewer, widgets


def _add_demo_smear(viewer, seed: int):
    """Add :func:`demo_smear` and its truth labels as the sample menu does; return the image."""
    from ._sample_data import _morphology_label_kwargs
    from .synthetic import SAMPLES

    smear = demo_smear(seed)
    name = SAMPLES[DEMO_SAMPLE][0]
    if seed != SAMPLES[DEMO_SAMPLE][1]["seed"]:
        name = f"{name} (seed {seed})"
    image_layer = viewer.add_image(smear.image, name=name, rgb=True)
    viewer.add_labels(smear.labels, **_morphology_label_kwargs())
    return image_layer


def has_display() -> bool:
    """True when a GUI can open (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
