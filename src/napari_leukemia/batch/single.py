"""``napari-leukemia explain``: one image's maps as files (.npy, overlay PNG, JSON).

Every file is checked before anything is written and written atomically
(`safe_files.staged`), so existing files are never replaced and an interrupted call
leaves nothing half-written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _bbox_of(image, cell: int | None, bbox):
    """The explained box: --bbox as given, --cell N (1 = most confident), or None."""
    if bbox is not None:
        return tuple(int(v) for v in bbox)
    if cell is None:
        return None
    from ..cells import detect_cells

    cells = detect_cells(image)
    if not 1 <= cell <= len(cells):
        found = f"{len(cells)} cell(s) were detected" if cells else "no cell was detected"
        raise ValueError(f"--cell {cell} does not exist: {found} (cells count from 1).")
    return tuple(int(v) for v in cells[cell - 1].bbox)


def _record(explanation, image_path: Path, model_path, cell) -> dict:
    from .. import __version__

    return {
        "image": str(image_path),
        "model": str(model_path) if model_path else "bundled",
        "napari_leukemia": __version__,
        "method": explanation.method,
        "params": explanation.params,
        "cell": cell,
        "bbox": list(explanation.bbox) if explanation.bbox else None,
        "target": explanation.target,
        "target_name": explanation.target_name,
        "logit": explanation.logit,
        "predicted": explanation.predicted,
        "probabilities": explanation.probabilities,
        "signed": explanation.signed,
        "empty": explanation.empty,
        "transform": explanation.transform.as_dict() if explanation.transform else None,
        "layer": explanation.layer,
        "notes": explanation.notes,
    }


def explain_to_files(
    image_path, methods, out_dir, *, cell=None, bbox=None, target=None, model=None
) -> list[Path]:
    """Explain one image with each of `methods`; write ``STEM_METHOD.{npy,png,json}``.

    Raises FileExistsError naming the files, before computing anything, when any of
    them exists.
    """
    from ..demo import _map_view
    from ..explain import explain_full
    from ..figures import render_map_figure
    from ..images import read_image
    from ..model.classify import load_model
    from ..safe_files import staged

    image_path, out_dir = Path(image_path), Path(out_dir)
    stem = image_path.stem + (f"_cell{cell}" if cell else "")
    targets = {
        m: [out_dir / f"{stem}_{m}{suffix}" for suffix in (".npy", ".png", ".json")]
        for m in methods
    }
    existing = [str(p) for paths in targets.values() for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"{', '.join(existing)} already exist(s); nothing was written. Choose another "
            "--out folder or move those files away."
        )
    image = read_image(image_path)
    loaded = load_model(model)
    box = _bbox_of(image, cell, bbox)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for method, paths in targets.items():
        explanation = explain_full(image, method, loaded, target, bbox=box)
        with staged(paths, overwrite=False) as (npy, png, js):
            with open(npy, "wb") as handle:
                np.save(handle, explanation.map)
            render_map_figure(png, image, _map_view(explanation))
            record = _record(explanation, image_path, model, cell)
            js.write_text(json.dumps(record, indent=2, default=_plain) + "\n")
        written += paths
    return written


def _plain(value):
    """JSON for numpy scalars and tuples in parameters."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
