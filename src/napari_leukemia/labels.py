"""Morphology label classes shared by the sample data, annotation and quantification."""

from __future__ import annotations

#: Label value → class name, as in document 003's segmentation ground truth.
MORPHOLOGY_CLASSES: dict[int, str] = {
    1: "nucleus",
    2: "cytoplasm",
    3: "vacuole",
    4: "red blood cell",
    5: "background",
}

#: Label value → RGBA colour (0–1) used for the morphology Labels layer.
MORPHOLOGY_COLORS: dict[int, tuple[float, float, float, float]] = {
    1: (0.45, 0.10, 0.60, 1.0),  # nucleus: deep purple
    2: (0.35, 0.65, 0.95, 1.0),  # cytoplasm: sky blue
    3: (1.00, 1.00, 1.00, 1.0),  # vacuole: white
    4: (0.90, 0.25, 0.25, 1.0),  # red blood cell: red
    5: (0.85, 0.80, 0.55, 1.0),  # background: straw
}
