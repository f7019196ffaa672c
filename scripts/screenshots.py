"""Take the docs' screenshots from a real napari viewer at 1600x1000 (run under xvfb-run).

xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

One screenshot per widget, each taken after using it on the demo smear, in the order
a researcher goes: detect → ROI → classify → explain → labels → overlap → preprocess →
sanity checks.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QDialog
from skimage import io

from napari_leukemia.demo import run_viewer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"
SIZE = (1600, 1000)


def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.01)


def wait(done, timeout: float = 300.0) -> None:
    start = time.time()
    while not done():
        QApplication.processEvents()
        time.sleep(0.01)
        if time.time() - start > timeout:
            raise TimeoutError("the widget did not finish")


def show_tab(viewer, name: str) -> None:
    """Raise the dock widget `name` (the docks are tabbed)."""
    widget = viewer.window.dock_widgets[f"{name} (napari-leukemia)"]
    dock = getattr(widget, "native", widget).parent()  # the dock around the widget
    dock.show()
    dock.raise_()
    settle()


def shoot(viewer, file: str) -> None:
    settle()
    io.imsave(DOCS / file, viewer.screenshot(canvas_only=False, flash=False))
    print(f"wrote {DOCS / file}")


def _bare_box(image, cells_layer, side: int = 40) -> tuple[int, int, int, int]:
    """A box of `side` pixels that no cell box touches (red cells and slide only)."""
    import numpy as np

    from napari_leukemia.sanity.placement import free_offsets

    occupied = np.zeros(image.shape[:2], bool)
    for corners in cells_layer.data:
        (r0, c0), (r1, c1) = np.min(corners, axis=0), np.max(corners, axis=0)
        occupied[max(int(r0), 0) : int(r1) + 1, max(int(c0), 0) : int(c1) + 1] = True
    top, left = (int(v) for v in free_offsets(occupied, (0, 0, side, side), step=8)[0])
    return top, left, top + side, left + side


def classify_drawn_box(viewer, classify) -> None:
    """A box drawn on bare slide, classified: the widget says it holds no white cell.
    The box is removed and the first cell selected again afterwards."""
    from napari_leukemia._widgets import selection

    cells = selection.selected_cell(viewer).cells_layer
    image = selection.selected_cell(viewer).image_layer.data
    cells.add_rectangles(selection.bbox_to_rectangle(_bare_box(image, cells)))
    drawn = len(cells.data) - 1
    selection.select_cell(cells, drawn)
    classify.run()
    wait(lambda: classify.run_button.enabled)
    shoot(viewer, "widget_classify_no_cell.png")
    cells.selected_data = {drawn}
    cells.remove_selected()
    selection.select_cell(cells, 0)
    close_toasts(viewer)
    settle()


def close_toasts(viewer) -> None:
    """Close napari's notification toasts. Under Xvfb the window is never active, so
    they never time out, and the bare box's warnings would sit in every later
    screenshot, next to maps of another cell."""
    for toast in viewer.window._qt_window.findChildren(QDialog):
        if toast.isVisible():
            toast.close()


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    viewer, widgets = run_viewer()
    for name in ("Morphology labels", "Relevance overlap"):
        _, widgets[name] = viewer.window.add_plugin_dock_widget(
            "napari-leukemia", name, tabify=True
        )
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(*SIZE)
    docks = [getattr(w, "native", w).parent() for w in viewer.window.dock_widgets.values()]
    window.resizeDocks(docks, [460] * len(docks), Qt.Orientation.Horizontal)
    settle()
    truth = [lay for lay in viewer.layers if "labels" in lay.name][0]
    truth.visible = False

    def use(tab: str, file: str, run=None, done=lambda: True) -> None:
        """Raise `tab`, run its action, wait until it is done, take the screenshot."""
        show_tab(viewer, tab)
        if run is not None:
            run()
        wait(done)
        shoot(viewer, file)

    use("Detect cells", "viewer_cells.png")
    use("Extract ROI", "widget_roi.png", widgets["Extract ROI"].run)
    for layer in viewer.layers:  # hide the ROI again for the next steps
        if layer.name.startswith("ROI"):
            layer.visible = False
    classify = widgets["Classify cell"]
    use("Classify cell", "widget_classify.png", classify.run, lambda: classify.run_button.enabled)
    classify_drawn_box(viewer, classify)
    explain = widgets["Explain"]
    explain.methods.value = ["gradient_x_input", "lrp_epsilon", "grad_cam"]
    use("Explain", "widget_explain.png", explain.run, lambda: not explain.running)
    explain.toggle_grid()
    shoot(viewer, "widget_explain_side_by_side.png")
    explain.toggle_grid()
    labels = widgets["Morphology labels"]
    use(
        "Morphology labels",
        "widget_labels.png",
        labels.suggest,
        lambda: labels.suggest_button.enabled,
    )
    widgets["Relevance overlap"].labels.value = truth
    use("Relevance overlap", "widget_overlap.png", widgets["Relevance overlap"].compute)
    use("Preprocess", "widget_preprocess.png", widgets["Preprocess"].run)
    for layer in viewer.layers:  # back to the smear, so the tested contexts show beside it
        layer.visible = not layer.name.endswith("pipeline")
    sanity = widgets["Sanity checks"]
    use(
        "Sanity checks",
        "widget_sanity.png",
        sanity.run,
        lambda: sanity.run_button.enabled and bool(sanity.tiles) and viewer.reset_view() is None,
    )
    viewer.close()


if __name__ == "__main__":
    main()
    napari.Viewer.close_all()
