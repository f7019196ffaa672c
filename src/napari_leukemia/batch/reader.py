"""Open a batch store in napari: one image's layers, read lazily from the store.

`read_store(path, image)` returns napari layer-data tuples (no Qt, no viewer): the
image (multiscale, dask arrays), the cells as a Shapes layer whose features are the
cells table, the cell masks and morphology labels, and one layer per attribution
method (axis 0 = cell, aligned on the image). `napari_get_reader` is the npe2 reader
that napari calls when a store is opened or dropped on the viewer; it opens the first
image (by name), or the image whose group was opened (``STORE/images/NAME``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import ATTR

SIGNED_COLORMAP = "PiYG"
POSITIVE_COLORMAP = "inferno"


def _split(path) -> tuple[Path, str | None] | None:
    """(store folder, image name or None) when `path` is a store or an image in one."""
    path = Path(path)
    if _is_store(path):
        return path, None
    if path.parent.name == "images" and _is_store(path.parent.parent):
        return path.parent.parent, path.name
    return None


def _is_store(folder: Path) -> bool:
    import json

    meta = folder / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return ATTR in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False


def image_names(store) -> list[str]:
    """The image groups of a store, by name (a folder listing: no metadata is read)."""
    folder = Path(store) / "images"
    return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())


def _multiscale(group) -> list:
    import dask.array as da

    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    axes = [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]]
    levels = [da.from_zarr(group[d["path"]]) for d in datasets]
    if axes[0] == "c":
        levels = [level.transpose(1, 2, 0) for level in levels]
    return levels


def _cells_layer(table, name: str) -> tuple:
    boxes = [
        np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
        for r0, c0, r1, c1 in table[["min_row", "min_col", "max_row", "max_col"]].to_numpy()
    ]
    kwargs = {
        "name": f"{name} cells",
        "shape_type": "rectangle",
        "edge_color": "#ffe000",
        "face_color": "transparent",
        "edge_width": 1.5,
        "features": table.reset_index(drop=True),
        "text": {"string": "{cell}: {class}", "size": 8, "color": "#ffe000"},
    }
    return (boxes, kwargs, "shapes")


def _map_layers(group, name: str, cells_table) -> list[tuple]:
    import dask.array as da

    from ..explain.methods import method_info

    if "maps" not in group:
        return []
    layers = []
    for method, array in sorted(group["maps"].arrays()):
        if array.shape[0] == 0:
            continue
        info = method_info(method)
        data = da.from_zarr(array)
        top = float(np.percentile(np.abs(array[...]), 99.5)) or 1.0
        layers.append(
            (
                data,
                {
                    "name": f"{name} {info.label}",
                    "colormap": SIGNED_COLORMAP if info.signed else POSITIVE_COLORMAP,
                    "contrast_limits": (-top, top) if info.signed else (0.0, top),
                    "opacity": 0.7,
                    "blending": "translucent",
                    "visible": not layers,
                    "metadata": {ATTR: {"method": method, "cells": cells_table["cell"].tolist()}},
                },
                "image",
            )
        )
    return layers


def read_store(path, image: str | None = None) -> list[tuple]:
    """Layer data of `image` (default: the first by name) of the store at `path`."""
    from .tables import read_table

    split = _split(path)
    if split is None:
        raise ValueError(f"{path} is not a napari-leukemia batch store.")
    store, from_path = split
    import fsspec
    import zarr

    name = image or from_path
    if name is None:
        names = image_names(store)
        if not names:
            raise ValueError(f"The store {store} holds no image yet.")
        name = names[0]
    elif not (store / "images" / name / "zarr.json").is_file():
        examples = ", ".join(image_names(store)[:3]) or "none"
        raise ValueError(f"The store {store} has no image {name!r}; it has e.g. {examples}.")
    group = zarr.open_group(store / "images" / name, mode="r")
    info = dict(group.attrs.get(ATTR, {}))
    meta = {ATTR: {"store": str(store), "image": name, **info}}
    fs = fsspec.filesystem("file")
    cells = read_table(fs, str(store / "images" / name / "tables" / "cells.parquet"))
    levels = _multiscale(group)
    rgb = levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4)
    layers = [(levels, {"name": name, "rgb": rgb, "metadata": meta}, "image")]
    layers += _map_layers(group, name, cells)
    for label, title in (("cells", "cell masks"), ("morphology", "morphology")):
        if "labels" in group and label in group["labels"]:
            levels = _multiscale(group["labels"][label])
            layers.append((levels, {"name": f"{name} {title}", "opacity": 0.4,
                                    "visible": label == "cells"}, "labels"))  # fmt: skip
    if len(cells):
        layers.append(_cells_layer(cells, name))
    return layers


def napari_get_reader(path):
    """npe2 reader: a function for a batch store (or an image group in one), else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if _split(path) is None:
        return None
    return read_store
