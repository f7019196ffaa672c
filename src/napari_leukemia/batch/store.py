"""The batch store: one OME-Zarr (NGFF 0.5, zarr v3) hierarchy, written with ome-zarr-py.

Layout (``STORE`` may be a folder or any fsspec URL, e.g. ``memory://run``)::

    STORE/                      zarr group; attrs["napari_leukemia"]: run fingerprint
      images/<name>/            NGFF multiscale image (c, y, x) of one input image
        labels/cells            NGFF label image: cell i+1 (image-label colours, names)
        labels/morphology       the morphology labels given with --labels
        maps/<method>           float32 (cell, y, x), aligned on the image's level 0
        tables/*.parquet        cells, maps, quantification and summary of this image
      tables/summary.parquet    row per image x cell x method x label
      tables/cells.parquet, tables/errors.parquet

Images and labels are written by ome-zarr-py (`write_multiscale`,
`write_multiscale_labels`: arrays and NGFF metadata) from a pyramid made here with numpy
(2x2 means for images, every second pixel for labels), which is several times faster
than letting it downsample with dask for small fields.

An image group is marked complete (``attrs["napari_leukemia"]["complete"]``) only after
everything in it is written; groups without the mark are removed before a run resumes.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..tiles import LARGE_PIXELS
from .tables import read_table, write_table

ATTR = "napari_leukemia"
FORMAT = 1
#: Fingerprint entries that must match for a run to add to an existing store.
RUN_KEYS = ("format", "model_sha256", "methods", "params", "labels", "max_pixels")
#: What a store written before an entry existed ran with (its value then).
RUN_DEFAULTS = {"max_pixels": LARGE_PIXELS}
PACKAGES = ("napari-leukemia", "tensorflow-cpu", "keras", "numpy", "zarr", "ome-zarr", "dask")
CELL_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178))


class StoreError(ValueError):
    """The store cannot be used as asked; the message says why and what to do."""


#: OSError numbers of a full disk or an exhausted quota.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_failure(url: str, error: OSError, what: str) -> StoreError:
    """The `StoreError` for an OSError while writing `what` into the store at `url`.

    Writes stop there: every image already marked complete stays as it is, and the
    unmarked one is removed and redone when the same command runs again.
    """
    kept = (
        f"Images already marked complete in {url} are kept; {what} was not marked "
        "complete and is redone when you run the same command again."
    )
    if error.errno in DISK_FULL:
        return StoreError(
            f"The disk holding the store is full ({error.strerror}) while writing {what}. "
            f"{kept} Free some space first (or resume into a copy on a larger disk)."
        )
    return StoreError(f"Writing {what} failed ({type(error).__name__}: {error}). {kept}")


#: What a zarr.json that is not JSON, or JSON of the wrong shape, raises in zarr.
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)


def unreadable_message(url: str, error: Exception) -> str:
    """The message of a store whose zarr metadata cannot be parsed."""
    return (
        f"{url} is not a readable batch store: its zarr metadata is damaged "
        f"({type(error).__name__}: {error}). Move it away (or choose another output "
        "folder), or pass --overwrite to replace it."
    )


def open_group(url: str, mode: str = "r"):
    """The zarr group at `url`; damaged metadata raises `StoreError`, not a JSON error."""
    import zarr

    try:
        return zarr.open_group(url, mode=mode)
    except UNREADABLE as error:
        raise StoreError(unreadable_message(url, error)) from None


def check_writable(url: str) -> None:
    """Raise `StoreError` when a local store at `url` cannot be created or written.

    Checked before any work so a run does not fail after its first image. The nearest
    existing folder on the path must be a folder we may write to; other file systems
    (``memory://``, object stores) are left to fail on their first write.
    """
    import os
    from pathlib import Path

    if "://" in url and not url.startswith("file://"):
        return
    path = Path(url.removeprefix("file://")).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise StoreError(
            f"Cannot create the store at {url}: {existing} is a file, not a folder. "
            "Choose an output folder elsewhere."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(
            f"Cannot write the store at {url}: {existing} is read-only for this user. "
            "Choose an output folder you may write to."
        )


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _halve(level: np.ndarray, labels: bool) -> np.ndarray:
    """Half resolution in y and x (the last two axes): 2x2 means for images, every second
    pixel for labels (so label values stay valid)."""
    if labels:
        return np.ascontiguousarray(level[..., ::2, ::2])
    rows, cols = level.shape[-2] // 2 * 2, level.shape[-1] // 2 * 2
    block = level[..., :rows, :cols].astype(np.float32)
    mean = (block[..., ::2, ::2] + block[..., 1::2, ::2] + block[..., ::2, 1::2]
            + block[..., 1::2, 1::2]) / 4  # fmt: skip
    return np.round(mean).astype(level.dtype)


def pyramid(array: np.ndarray, labels: bool = False, smallest: int = 64) -> tuple[list, list]:
    """Levels of `array` (..., y, x), halved while the smaller side stays >= `smallest`,
    and their NGFF coordinate transformations (scale, and the pixel-centre shift)."""
    levels, lead = [array], array.ndim - 2
    while min(levels[-1].shape[-2:]) // 2 >= smallest:
        levels.append(_halve(levels[-1], labels))
    transforms = []
    for k in range(len(levels)):
        f = float(2**k)
        shift = 0.0 if labels else (f - 1) / 2
        transforms.append([
            {"type": "scale", "scale": [1.0] * lead + [f, f]},
            {"type": "translation", "translation": [0.0] * lead + [shift, shift]},
        ])  # fmt: skip
    return levels, transforms


@dataclass
class BatchStore:
    """An open store: its URL, its fsspec file system and root path, its zarr group."""

    url: str
    fs: object
    path: str
    root: object

    # ------------------------------------------------------------------ opening
    @classmethod
    def check(cls, url, run: dict, overwrite: bool = False) -> None:
        """Raise `StoreError` if `open` would refuse `url` or could not write there;
        writes nothing."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(str(url))
        existing = cls._existing_run(fs, path.rstrip("/"), str(url), damaged_ok=overwrite)
        if existing is not None and _differs(existing, run) and not overwrite:
            raise StoreError(_mismatch_message(str(url), existing, run))
        check_writable(str(url))

    @classmethod
    def open(cls, url, run: dict, overwrite: bool = False) -> BatchStore:
        """Open or create the store at `url` for a run with fingerprint `run`.

        Refuses a folder that holds other files, and a store of another run (model,
        methods, parameters) unless `overwrite`, which then empties it first.
        """
        import fsspec
        import zarr

        url = str(url)
        fs, path = fsspec.core.url_to_fs(url)
        path = path.rstrip("/")
        try:
            existing = cls._existing_run(fs, path, url, damaged_ok=overwrite)
            if existing is not None and _differs(existing, run):
                if not overwrite:
                    raise StoreError(_mismatch_message(url, existing, run))
                fs.rm(path, recursive=True)
            elif existing is not None and overwrite:
                fs.rm(path, recursive=True)
            root = zarr.open_group(url, mode="a")
            if ATTR not in root.attrs:
                root.attrs[ATTR] = run
            root.require_group("images")
        except OSError as error:  # no permission, read-only file system, no space
            raise StoreError(
                f"Cannot write the store at {url} ({error}); choose a folder you may "
                "write to with --out."
            ) from error
        return cls(url, fs, path, root)

    @classmethod
    def finished(cls, url) -> set[str]:
        """Names of the complete images of the store at `url` (none if there is none)."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(str(url))
        path = path.rstrip("/")
        if not fs.exists(f"{path}/zarr.json"):
            return set()
        root = open_group(str(url))  # damaged metadata: StoreError
        if not fs.exists(f"{path}/images/zarr.json"):
            return set()
        try:
            images = root["images"]
            return {
                name
                for name, group in images.groups()
                if group.attrs.get(ATTR, {}).get("complete", False)
            }
        except UNREADABLE as error:
            raise StoreError(unreadable_message(str(url), error)) from None

    @classmethod
    def attach(cls, url) -> BatchStore:
        """The store at `url`, already opened by `open` (on a worker: no checks)."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(str(url))
        return cls(str(url), fs, path.rstrip("/"), open_group(str(url), mode="r+"))

    @staticmethod
    def _existing_run(fs, path: str, url: str, damaged_ok: bool = False) -> dict | None:
        """The run fingerprint of the store at `path`, None when there is none yet.

        Raises `StoreError` for a file, a folder of other files, a zarr store of another
        tool and (unless `damaged_ok`, i.e. the caller will replace it) damaged metadata.
        """
        if not fs.exists(path):
            return None
        if not fs.isdir(path):
            raise StoreError(f"{url} is a file, not a store folder; choose another --out.")
        if not fs.exists(f"{path}/zarr.json"):
            if fs.ls(path):
                raise StoreError(
                    f"{url} is a folder with other files, not a napari-leukemia store; "
                    "nothing was written. Choose a new or empty folder with --out."
                )
            return None
        try:
            attrs = open_group(url).attrs.asdict()
        except StoreError:
            if damaged_ok:
                return {}  # differs from any run: `open` replaces it
            raise
        if ATTR not in attrs:
            raise StoreError(
                f"{url} is a zarr store made by another tool; it was left alone. Choose "
                "another --out."
            )
        return attrs[ATTR]

    # ------------------------------------------------------------------ images
    def image_names(self, complete: bool = True) -> list[str]:
        """Names of the image groups that are (or, with ``complete=False``, are not)
        marked complete."""
        images = self.root["images"]
        names = []
        for name, group in images.groups():
            done = bool(group.attrs.get(ATTR, {}).get("complete", False))
            if done == complete:
                names.append(name)
        return sorted(names)

    def remove_incomplete(self) -> list[str]:
        """Delete image groups left half-written by an interrupted run."""
        names = self.image_names(complete=False)
        for name in names:
            self.fs.rm(f"{self.path}/images/{name}", recursive=True)
        return names

    def write_image_result(self, result: dict) -> None:
        """Write one analysed image (see `analysis.analyse`), then mark it complete."""
        from ome_zarr.writer import write_multiscale

        name = result["name"]
        if self.fs.exists(f"{self.path}/images/{name}"):  # a half-written earlier try
            self.fs.rm(f"{self.path}/images/{name}", recursive=True)
        group = self.root["images"].create_group(name)
        image = np.asarray(result["image"])
        data, axes = (np.moveaxis(image, -1, 0), "cyx") if image.ndim == 3 else (image, "yx")
        levels, transforms = pyramid(np.ascontiguousarray(data))
        write_multiscale(levels, group, axes=axes, coordinate_transformations=transforms,
                         name=name)  # fmt: skip
        self._write_cell_labels(group, result)
        if result["labels"] is not None:
            self._write_morphology(group, result)
        self._write_maps(group, result)
        self._write_image_tables(name, result)
        group.attrs[ATTR] = completed_entry(result)

    @staticmethod
    def _write_label_image(group, name: str, labels: np.ndarray, colours, properties) -> None:
        from ome_zarr.writer import write_multiscale_labels

        levels, transforms = pyramid(labels, labels=True)
        write_multiscale_labels(
            levels, group, name, axes="yx", coordinate_transformations=transforms,
            label_metadata={"colors": colours, "properties": properties},
        )  # fmt: skip

    def _write_cell_labels(self, group, result) -> None:
        cells = result["cells"]
        colours = [
            {"label-value": int(c), "rgba": [*CELL_COLOURS[(int(c) - 1) % 5], 255]}
            for c in cells["cell"]
        ]
        properties = [
            {"label-value": int(c), "class": str(k), "score": round(float(s), 4)}
            for c, k, s in zip(cells["cell"], cells["class"], cells["score"], strict=True)
        ]
        labels = np.ascontiguousarray(result["cell_labels"], dtype=np.int32)
        self._write_label_image(group, "cells", labels, colours, properties)

    def _write_morphology(self, group, result) -> None:
        from ..labels import MORPHOLOGY_COLORS

        labels = np.ascontiguousarray(result["labels"])
        values = [int(v) for v in np.unique(labels) if v]
        names = result["label_names"]
        colours, properties = [], []
        for v in values:
            rgba = MORPHOLOGY_COLORS.get(v)
            if rgba is not None:
                colours.append(
                    {"label-value": v, "rgba": [int(round(255 * c)) for c in _rgba(rgba)]}
                )
            properties.append({"label-value": v, "name": names.get(v, f"label {v}")})
        self._write_label_image(group, "morphology", labels, colours, properties)

    def _write_maps(self, group, result) -> None:
        maps = group.create_group("maps")
        maps.attrs[ATTR] = {
            "axes": ["cell", "y", "x"],
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}],
            "aligned_on": "../s0 (image level 0, same y and x pixels)",
            "roi_transforms": result["transforms"],
        }
        for method, stack in result["maps"].items():
            rows, cols = stack.shape[1:]
            array = maps.create_array(
                method, shape=stack.shape, dtype="float32", chunks=(1, rows, cols)
            )
            if stack.size:
                array[...] = stack
            array.attrs[ATTR] = {"method": method}

    def _write_image_tables(self, name: str, result: dict) -> None:
        base = f"{self.path}/images/{name}/tables"
        region = {"region": "../labels/cells", "instance_key": "cell", "image": name}
        write_table(self.fs, f"{base}/cells.parquet", result["cells"], region)
        write_table(self.fs, f"{base}/maps.parquet", result["map_rows"], region)
        if result["quantification"] is not None:
            write_table(self.fs, f"{base}/quantification.parquet", result["quantification"],
                        {**region, "labels": "../labels/morphology"})  # fmt: skip
        write_table(self.fs, f"{base}/summary.parquet", image_summary(result), region)

    # ------------------------------------------------------------------ tables
    def image_table(self, name: str, table: str) -> pd.DataFrame:
        return read_table(self.fs, f"{self.path}/images/{name}/tables/{table}.parquet")

    def write_run_tables(self, errors: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Rebuild the store-wide tables from every complete image, plus `errors`."""
        summaries, cells = [], []
        for name in self.image_names():
            source = self.root["images"][name].attrs[ATTR]["source"]
            for kind, bucket in (("summary", summaries), ("cells", cells)):
                table = self.image_table(name, kind)
                table.insert(0, "source", source)
                table.insert(0, "image", name)
                bucket.append(table)
        out = {
            "summary": _concat(summaries),
            "cells": _concat(cells),
            "errors": errors,
        }
        try:
            for kind, table in out.items():
                write_table(self.fs, f"{self.path}/tables/{kind}.parquet", table)
        except OSError as error:
            raise write_failure(self.url, error, "the store-wide tables") from None
        return out


def completed_entry(result: dict, **extra) -> dict:
    """An image group's attributes, written last: they mark the entry complete."""
    return {
        "source": result["source"],
        "n_cells": len(result["cells"]),
        "seconds": round(float(result["seconds"]), 3),
        "worker_pid": result.get("worker_pid"),
        **extra,
        "complete": True,
    }


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _rgba(colour) -> tuple:
    colour = tuple(colour)
    if max(colour) > 1:
        colour = tuple(c / 255 for c in colour)
    return colour if len(colour) == 4 else (*colour, 1.0)


def image_summary(result: dict) -> pd.DataFrame:
    """Row per cell x method x label: cells joined with their maps and quantification."""
    table = result["cells"]
    if len(result["map_rows"]):
        table = table.merge(result["map_rows"], on="cell", how="left")
    quantification = result["quantification"]
    if quantification is not None and len(quantification):
        table = table.merge(quantification, on=["cell", "method"], how="left")
    return table


def _setting(run: dict, key: str):
    return run.get(key, RUN_DEFAULTS.get(key))


def _changed(existing: dict, run: dict) -> list[str]:
    return [k for k in RUN_KEYS if _setting(existing, k) != _setting(run, k)]


def _differs(existing: dict, run: dict) -> bool:
    return bool(_changed(existing, run))


def _mismatch_message(url: str, existing: dict, run: dict) -> str:
    changed = _changed(existing, run)
    details = "; ".join(
        f"{k}: store {_setting(existing, k)!r}, now {_setting(run, k)!r}" for k in changed
    )
    return (
        f"The store {url} was made by a run with other settings ({details}). Resuming "
        "would mix results; use the same settings, another --out, or --overwrite to "
        "replace the store."
    )
