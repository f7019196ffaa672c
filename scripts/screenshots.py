"""Take the docs' screenshots from a real napari viewer (run under xvfb-run).

xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication
from skimage import io

from napari_leukemia.demo import run_viewer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def settle(viewer, rounds: int = 20) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    viewer, widgets = run_viewer()
    viewer.window.resize(1500, 950)
    viewer.window.show()
    settle(viewer)
    classify = widgets["Classify cell"]
    classify.run()
    while classify.last_record is None:
        QApplication.processEvents()
    widgets["Extract ROI"].run()
    viewer.reset_view()
    settle(viewer)
    viewer.layers.selection.active = viewer.layers[-1]
    io.imsave(DOCS / "viewer_cells.png", viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {DOCS / 'viewer_cells.png'}")
    viewer.close()


if __name__ == "__main__":
    main()
    napari.Viewer.close_all()
