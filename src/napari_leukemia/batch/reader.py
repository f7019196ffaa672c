"""Open a batch store in napari: one image's layers, read lazily from the store.

`read_store(path, image)` returns napari layer-data tuples (no Qt, no viewer): the
image (multiscale, dask arrays), the cells as a Shapes layer whose features are the
cells table, the cell masks and morphology labels, and one layer per attribution
method (axis 0 = cell, aligned on the image; see `_pasted_pyramid` for the maps of a
whole slide, kept on the model input). `napari_get_reader` is the npe2 reader
that napari calls when a store is opened or dropped on the viewer; it opens the first
image (by name), or the image whose group was opened (``STORE/images/NAME``).

Every layer's ``metadata["napari_leukemia"]`` names its store (`STORE`), image
(`STORE_IMAGE`) and role (`ROLE`), so the Batch widget finds and replaces the layers of
a store image, and never a user's own. The cells layer is a cells layer of the plugin
(kind ``"cells"``, see `_widgets.selection`), so clicking a cell selects it for the other
widgets. An npe2 reader can only return layers; the cells table dock is the Batch
widget's (its "Open store", or any store layers added while it is open).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import layer_metadata
from .store import ATTR, UNREADABLE, StoreError, unreadable_message

STORE = "store"
STORE_IMAGE = "store_image"
ROLE = "store_layer"  # "image", "map", "cell masks", "morphology" or "cells"
CELLS_EDGE_WIDTH = 1.5
#: Chunk side of the maps pasted on the image grid: one chunk is computed per view tile.
PASTE_CHUNK = 512


def _split(path) -> tuple[Path, str | None] | None:
    """(store folder, image name or None) when `path` is a store or an image in one.

    A folder whose ``zarr.json`` is not JSON counts as a (damaged) store, so opening
    it says so instead of "no reader"."""
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
        attributes = json.loads(meta.read_text()).get("attributes", {})
    except OSError:
        return False
    except UNREADABLE:
        return True  # damaged: `read_store` reports it
    return isinstance(attributes, dict) and ATTR in attributes


def _group(folder: Path, store: Path):
    """The zarr group at `folder`, or `StoreError` naming `store` when it is damaged."""
    import zarr

    try:
        return zarr.open_group(folder, mode="r")
    except UNREADABLE as error:
        raise StoreError(unreadable_message(str(store), error)) from None


def store_meta(store, image: str, role: str, **fields) -> dict:
    """The plugin metadata of a layer read from `image` of `store`."""
    return {STORE: str(store), STORE_IMAGE: image, ROLE: role, **fields}


def store_of(layer) -> tuple[str, str] | None:
    """(store, image) of a layer read from a batch store, else None (a user's layer)."""
    meta = layer_metadata.read(layer)
    if STORE not in meta or STORE_IMAGE not in meta:
        return None
    return meta[STORE], meta[STORE_IMAGE]


def image_names(store) -> list[str]:
    """The image groups of a store, by name (a folder listing: no metadata is read)."""
    folder = Path(store) / "images"
    return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())


def _first_complete(store: Path) -> str:
    """The first image (by name) that its run finished."""
    for name in image_names(store):
        if _group(store / "images" / name, store).attrs.get(ATTR, {}).get("complete"):
            return name
    raise StoreError(f"The store {store} holds no finished image yet.")


def store_overview(store) -> dict:
    """The store's ``images`` (one row per finished or failed image) and ``cells``
    (one row per image x cell) tables, for browsing.

    Read from the image groups themselves, so a store whose run was stopped before it
    wrote its store-wide tables is browsed all the same (its errors are then unknown).
    """
    import fsspec
    import pandas as pd

    from .tables import read_table

    split = _split(store)
    if split is None or split[1] is not None:
        raise StoreError(f"{store} is not a napari-leukemia batch store folder.")
    store = split[0]
    _group(store, store)
    fs = fsspec.filesystem("file")
    images, cells = [], []
    for name in image_names(store):
        info = _group(store / "images" / name, store).attrs.get(ATTR, {})
        if not info.get("complete"):
            continue
        images.append({"image": name, "cells": info.get("n_cells", 0), "error": "",
                       "source": info.get("source", "")})  # fmt: skip
        table = read_table(fs, str(store / "images" / name / "tables" / "cells.parquet"))
        table.insert(0, "image", name)
        cells.append(table)
    errors = store / "tables" / "errors.parquet"
    if errors.is_file():
        for row in read_table(fs, str(errors)).to_dict("records"):
            images.append({"image": row["image"], "cells": 0, "error": row["error"],
                           "source": row["source"]})  # fmt: skip
    cells = [t for t in cells if len(t)]
    return {
        "images": pd.DataFrame(images, columns=["image", "cells", "error", "source"]),
        "cells": pd.concat(cells, ignore_index=True) if cells else pd.DataFrame(),
    }


def _multiscale(group) -> list:
    import dask.array as da

    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    axes = [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]]
    levels = [da.from_zarr(group[d["path"]]) for d in datasets]
    if axes[0] == "c":
        levels = [level.transpose(1, 2, 0) for level in levels]
    return levels


def _cells_layer(table, store: Path, name: str) -> tuple:
    """The cells as the plugin's cells layer (first cell selected), table as features."""
    from .._widgets.selection import OTHER_EDGE, SELECTED_EDGE, bbox_to_rectangle

    bboxes = table[["min_row", "min_col", "max_row", "max_col"]].to_numpy()
    boxes = [bbox_to_rectangle(bbox) for bbox in bboxes]
    features = table.reset_index(drop=True)
    features["selected"] = np.arange(len(features)) == 0
    meta = store_meta(store, name, "cells", **{layer_metadata.IMAGE_LAYER: name})
    kwargs = {
        "name": f"{name} cells",
        "shape_type": "rectangle",
        "edge_color": [SELECTED_EDGE if s else OTHER_EDGE for s in features["selected"]],
        "face_color": "transparent",
        "edge_width": CELLS_EDGE_WIDTH,
        "features": features,
        "text": {"string": "{cell}: {class}", "size": 8, "color": "#ffe000"},
        "metadata": layer_metadata.make(layer_metadata.CELLS, **meta),
    }
    return (boxes, kwargs, "shapes")


def map_colormaps():
    """(signed, non-negative) colormaps: the Explain widget's green / yellow ones."""
    from .._widgets.colormaps import POSITIVE_COLORMAP, SIGNED_COLORMAP

    return SIGNED_COLORMAP, POSITIVE_COLORMAP


def _level_window(transform, factor: float, size: tuple[int, int]):
    """(top, left, height, width) of a cell's ROI window on a pyramid level `factor`
    times coarser than the image, in that level's whole pixels."""
    scale = [s / factor for s in transform.scale]
    top, left = (int(round(o / factor)) for o in transform.origin)
    height, width = (max(1, int(round(s * n))) for s, n in zip(scale, size, strict=True))
    return top, left, height, width, scale


def _paste_block(block, maps, transforms, factor, block_info=None):
    """One (cell, rows, cols) chunk of the pasted maps: `explain.api.map_to_image` of the
    cells' model-input maps, on just this chunk (zero where no ROI window reaches)."""
    from ..explain.api import map_to_image
    from ..roi import RoiTransform

    (c0, c1), (r0, r1), (q0, q1) = block_info[0]["array-location"]
    out = np.zeros(block.shape, np.float32)
    for i in range(c0, c1):
        top, left, height, width, scale = _level_window(transforms[i], factor, maps.shape[1:])
        if top >= r1 or left >= q1 or top + height <= r0 or left + width <= q0:
            continue
        here = RoiTransform((float(top - r0), float(left - q0)), tuple(scale), (r1 - r0, q1 - q0))
        out[i - c0] = map_to_image(np.asarray(maps[i], np.float32), here)
    return out


def _pasted_pyramid(maps, transforms, level_shapes) -> list:
    """Model-input maps (cell, v, u) as a lazy (cell, y, x) pyramid on the image grid.

    A whole slide's maps stay small in the store (one model input per cell, each with
    its own ROI transform), and one napari layer has a single transform, so the maps
    are pasted on the image grid instead, chunk by chunk and only when napari shows a
    chunk: each image pyramid level gets a level of maps, and a view reads the level it
    draws, never a full-size map. Axis 0 stays the cell, as for small images, so
    stepping it to the selected cell shows that cell's map in place.
    """
    import dask.array as da

    from ..roi import RoiTransform

    transforms = [RoiTransform(tuple(t["origin"]), tuple(t["scale"]), tuple(t["image_shape"]))
                  for t in transforms]  # fmt: skip
    levels = []
    for k, (rows, cols) in enumerate(level_shapes):
        grid = da.zeros((maps.shape[0], rows, cols), np.float32,
                        chunks=(1, PASTE_CHUNK, PASTE_CHUNK))  # fmt: skip
        levels.append(grid.map_blocks(_paste_block, maps, transforms, float(2**k),
                                      dtype=np.float32))  # fmt: skip
    return levels


def _map_layers(group, store: Path, name: str, cells_table, level_shapes) -> list[tuple]:
    import dask.array as da

    from ..explain.methods import method_info

    if "maps" not in group:
        return []
    space = group["maps"].attrs.get(ATTR, {}).get("space")
    transforms = group["maps"].attrs.get(ATTR, {}).get("roi_transforms", [])
    signed_colormap, positive_colormap = map_colormaps()
    cells, layers = cells_table["cell"].tolist(), []
    for method, array in sorted(group["maps"].arrays()):
        if array.shape[0] == 0:
            continue
        info = method_info(method)
        if space == "model_input":
            data = _pasted_pyramid(array, transforms, level_shapes)
        else:
            data = da.from_zarr(array)
        top = float(np.percentile(np.abs(array[...]), 99.5)) or 1.0
        layers.append(
            (
                data,
                {
                    "name": f"{name} {info.label}",
                    "colormap": signed_colormap if info.signed else positive_colormap,
                    "contrast_limits": (-top, top) if info.signed else (0.0, top),
                    "opacity": 1.0,  # as in Explain: the colormap's alpha does the fading
                    "blending": "translucent",
                    "interpolation2d": "nearest",
                    "visible": not layers,
                    "metadata": {
                        ATTR: store_meta(
                            store, name, "map", method=method, cells=cells, space=space or "image"
                        )  # fmt: skip
                    },
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

    _group(store, store)  # a damaged root says so here

    name = image or from_path
    if name is None:
        name = _first_complete(store)
    elif not (store / "images" / name / "zarr.json").is_file():
        examples = ", ".join(image_names(store)[:3]) or "none"
        raise ValueError(f"The store {store} has no image {name!r}; it has e.g. {examples}.")
    group = _group(store / "images" / name, store)
    info = dict(group.attrs.get(ATTR, {}))
    if not info.get("complete", False):
        raise StoreError(
            f"The image {name!r} of the store {store} is half-written (its run was "
            "interrupted); run the batch again into this store to finish it."
        )
    meta = {ATTR: store_meta(store, name, "image", **info)}
    fs = fsspec.filesystem("file")
    cells = read_table(fs, str(store / "images" / name / "tables" / "cells.parquet"))
    levels = _multiscale(group)
    rgb = levels[0].ndim == 3 and levels[0].shape[-1] in (3, 4)
    layers = [(levels, {"name": name, "rgb": rgb, "metadata": meta}, "image")]
    layers += _map_layers(group, store, name, cells, [level.shape[:2] for level in levels])
    for label, title in (("cells", "cell masks"), ("morphology", "morphology")):
        if "labels" in group and label in group["labels"]:
            levels = _multiscale(group["labels"][label])
            kwargs = {"name": f"{name} {title}", "opacity": 0.4, "visible": label == "cells",
                      "metadata": {ATTR: store_meta(store, name, title)}}  # fmt: skip
            layers.append((levels, kwargs, "labels"))
    if len(cells):
        layers.append(_cells_layer(cells, store, name))
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
