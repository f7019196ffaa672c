"""The colormaps of attribution maps, shared by the Explain widget and the store reader.

Qt-free (napari's colormap classes only), so opening a batch store does not import
the widgets.
"""

from __future__ import annotations

import numpy as np
from napari.utils.colormaps import Colormap, ensure_colormap

# Romanowsky stains colour a smear purple (nuclei), light blue (cytoplasm) and pink (red
# cells) on a pale background; green and yellow do not occur in it, so the maps use them.
MAX_ALPHA = 0.8  # even the strongest relevance lets the cell show through


def _signed_colormap() -> Colormap:
    """Green (negative) → transparent (0) → yellow-orange (positive), for signed maps."""
    return Colormap(
        colors=[
            [0.00, 0.40, 0.20, MAX_ALPHA],
            [0.30, 0.75, 0.35, 0.5],
            [1.00, 1.00, 1.00, 0.0],
            [1.00, 0.85, 0.10, 0.5],
            [0.95, 0.50, 0.00, MAX_ALPHA],
        ],
        controls=[0.0, 0.3, 0.5, 0.7, 1.0],
        name="napari_leukemia:relevance_signed",
        display_name="relevance − / +",
    )


def _positive_colormap() -> Colormap:
    """Viridis' green-to-yellow half, fading in from transparent, for non-negative maps."""
    steps = np.linspace(0.0, 1.0, 33)
    colors = np.asarray(ensure_colormap("viridis").map(0.45 + 0.55 * steps))
    colors[:, 3] = MAX_ALPHA * np.clip(steps / 0.6, 0.0, 1.0)
    return Colormap(
        colors=colors,
        controls=steps,
        name="napari_leukemia:relevance_positive",
        display_name="relevance ≥ 0",
    )


SIGNED_COLORMAP = _signed_colormap()
POSITIVE_COLORMAP = _positive_colormap()
