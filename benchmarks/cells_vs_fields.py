"""Compare a cell-ROI model with a whole-field model on the cell model's test split.

Both are scored image-level (a cell model averages its cells) and cell-level (every
detected cell's ROI, labelled with its field's class; a field model then sees a
single-cell ROI, which is outside what it was trained on). Run:

    python benchmarks/cells_vs_fields.py --cell-model CELL.keras --field-model FIELD.keras
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import io

from napari_leukemia.model.classify import load_model
from napari_leukemia.model.dataset import scan
from napari_leukemia.model.evaluation import classification_metrics
from napari_leukemia.model.inputs import cell_input, field_cells, field_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/all4"))
    parser.add_argument("--cell-model", type=Path, default=None)
    parser.add_argument("--field-model", type=Path, required=True)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"No data at {args.data}; nothing to compare.")
        return
    models = {
        "cell model": load_model(args.cell_model),
        "field model": load_model(args.field_model),
    }
    test_names = set(models["cell model"].info.data["split"]["test"])
    data = scan(args.data)
    indices = [i for i, p in enumerate(data.paths) if p.name in test_names]
    scores = {name: {"field": [], "cells": [], "cell_labels": []} for name in models}
    for i in indices:
        image = io.imread(data.paths[i])
        cells = field_cells(image)
        for name, model in models.items():
            batch, _ = field_inputs(image, model.info.input)
            scores[name]["field"].append(model.predict(batch).mean(axis=0))
            if cells:
                rois = np.stack([cell_input(image, c.bbox, model.info.input)[0] for c in cells])
                scores[name]["cells"].append(model.predict(rois))
                scores[name]["cell_labels"].extend([data.labels[i]] * len(cells))
    labels = data.labels[indices]
    print(f"test split of the cell model: {len(indices)} images")
    for name, s in scores.items():
        field = classification_metrics(
            labels, np.asarray(s["field"]), data.class_names, ["Benign"]
        )
        cells = classification_metrics(
            np.asarray(s["cell_labels"]), np.concatenate(s["cells"]), data.class_names, ["Benign"]
        )
        print(
            f"{name:12s} image-level accuracy {field['accuracy']:.4f} "
            f"(sensitivity {field['sensitivity']:.4f}, specificity {field['specificity']:.4f}); "
            f"single-cell ROI accuracy {cells['accuracy']:.4f} (n={cells['n_images']} cells)"
        )


if __name__ == "__main__":
    main()
