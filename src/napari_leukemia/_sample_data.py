"""napari sample-data providers: synthetic smears with exact morphology labels.

The fields are computed by :mod:`napari_leukemia.synthetic` (identical to the PNG files
in the repository's ``sample_data/``), so they work from an installed package without
any data files. napari is imported only inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .labels import MORPHOLOGY_CLASSES, MORPHOLOGY_COLORS
from .synthetic import SAMPLES, sample_smear

LayerData = tuple[np.ndarray, dict[str, Any], str]

__all__ = ["smear_224", "smear_640x480"]


def _morphology_label_kwargs() -> dict[str, Any]:
    """Labels-layer keyword arguments: named morphology classes and their colours."""
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    color_dict: dict[int | None, Any] = {None: "transparent", 0: "transparent"}
    color_dict.update({code: np.asarray(rgba) for code, rgba in MORPHOLOGY_COLORS.items()})
    features = pd.DataFrame(
        {"index": list(MORPHOLOGY_CLASSES), "name": list(MORPHOLOGY_CLASSES.values())}
    )
    return {
        "name": "morphology labels (truth)",
        "opacity": 0.4,
        "colormap": DirectLabelColormap(color_dict=color_dict),
        "features": features,
    }


def _sample_layers(stem: str) -> list[LayerData]:
    display_name = SAMPLES[stem][0]
    smear = sample_smear(stem)
    return [
        (smear.image, {"name": display_name, "rgb": True}, "image"),
        (smear.labels, _morphology_label_kwargs(), "labels"),
    ]


def smear_224() -> list[LayerData]:
    """Synthetic 224×224 smear at the all4 scale (2–3 leukocytes) with its labels."""
    return _sample_layers("smear_224")


def smear_640x480() -> list[LayerData]:
    """Synthetic 640×480 BCCD-like high-magnification smear with its labels."""
    return _sample_layers("smear_640x480")
