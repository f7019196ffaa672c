"""`run_batch`: the loop that sends images to Dask workers and writes what comes back.

Each worker analyses an image and writes it into its own group of the store, marking it
complete last (`analysis.analyse_into`); only a summary comes back. A store only this
process can see (``memory://``) is written here instead, one image at a time. Either way
a Ctrl+C or a killed worker leaves only unmarked image groups, which the next run
removes and redoes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..tiles import LARGE_PIXELS
from .analysis import Job, analyse, analyse_into, summary_of, write_result
from .cluster import ClusterError, dask_client
from .inputs import collect_inputs
from .progress import Progress
from .store import FORMAT, BatchStore, StoreError, file_sha256, package_versions

DEFAULT_METHODS = ("grad_cam",)
LABEL_SUFFIXES = (".png", ".tif", ".tiff")


class BatchError(ValueError):
    """A run that cannot start or go on; the message says what to do."""


@dataclass
class BatchReport:
    """What a run did: counts, the store-wide tables, and notes for the user."""

    store: str
    analysed: int = 0
    skipped: int = 0
    failed: int = 0
    cells: int = 0
    tables: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _names(paths: list[Path]) -> list[str]:
    """A group name per image: its file stem (made safe), with a short hash of its
    path when two inputs share a stem."""
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem).lstrip(".") or "image" for p in paths]
    counts = pd.Series(stems).value_counts()
    return [
        f"{s}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}" if counts[s] > 1 else s
        for s, p in zip(stems, paths, strict=True)
    ]


def _label_files(paths: list[Path], labels_dir) -> dict[Path, Path]:
    """The label file of each image in `labels_dir`: ``STEM_labels.png`` (or .tif), else
    ``STEM.png`` when that is not the image itself."""
    folder = Path(labels_dir).expanduser().resolve()
    if not folder.is_dir():
        raise BatchError(f"--labels {folder} is not a folder.")
    files = [f.resolve() for f in folder.iterdir() if f.suffix.lower() in LABEL_SUFFIXES]
    tagged = {f.stem.removesuffix("_labels"): f for f in files if f.stem.endswith("_labels")}
    plain = {f.stem: f for f in files}
    found = {}
    for p in paths:
        match = tagged.get(p.stem) or plain.get(p.stem)
        if match is not None and match != p.resolve():  # not the image itself
            found[p] = match
    if not found:
        examples = ", ".join(sorted(f.name for f in files)[:3]) or "no label file"
        raise BatchError(
            f"No label file in {folder} matches an input image: labels are matched by "
            f"file name (IMAGE.png -> {folder}/IMAGE.png or IMAGE_labels.png); that folder "
            f"has {examples}."
        )
    return found


def _label_of(path: Path, labels: dict) -> str | None:
    return str(labels[path]) if path in labels else None


def _store_url(out) -> str:
    """A URL every worker process resolves alike: local paths made absolute."""
    text = str(out)
    return text if "://" in text else str(Path(text).expanduser().resolve())


def _run_fingerprint(methods, model, labels_dir, max_pixels) -> tuple[dict, dict]:
    from ..explain.methods import method_info, resolve_params
    from ..model.classify import bundled_model_path

    for m in methods:
        method_info(m)
    params = {m: resolve_params(m, {}) for m in methods}
    model_file = bundled_model_path() if model is None else Path(model)
    if not model_file.is_file():
        raise BatchError(f"No model file at {model_file}; give a .keras file with --model.")
    run = {
        "format": FORMAT,
        "model": str(model_file.name),
        "model_sha256": file_sha256(model_file),
        "methods": list(methods),
        "params": params,
        "labels": labels_dir is not None,
        "max_pixels": None if max_pixels is None else int(max_pixels),
        "versions": package_versions(),
    }
    return json.loads(json.dumps(run)), params


def run_batch(
    inputs,
    out,
    *,
    methods=DEFAULT_METHODS,
    labels_dir=None,
    model=None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    connect_timeout: float = 5.0,
    max_pixels: int | None = LARGE_PIXELS,
) -> BatchReport:
    """Detect, classify, explain (and quantify) every input image into one store.

    Re-running with the same settings skips finished images; see `store` for the
    layout. Unreadable images go to ``tables/errors.parquet`` and the run goes on.
    Images of more than `max_pixels` pixels (rows x cols; None: no limit) are read
    lazily and analysed tile by tile (`whole_slide`; maps kept per cell on the model
    input, see `lazy_store`).
    """
    paths = collect_inputs(inputs)
    methods = tuple(methods)
    out = _store_url(out)
    run, params = _run_fingerprint(methods, model, labels_dir, max_pixels)
    labels = _label_files(paths, labels_dir) if labels_dir is not None else {}
    BatchStore.check(out, run, overwrite)  # refuse a wrong store before starting Dask
    done = set() if overwrite else BatchStore.finished(out)
    model = None if model is None else str(Path(model).expanduser().resolve())
    jobs = [
        Job(str(p), n, methods, params, model, _label_of(p, labels), max_pixels)
        for p, n in zip(paths, _names(paths), strict=True)
        if n not in done
    ]
    report = BatchReport(store=out, skipped=len(paths) - len(jobs))
    if labels and len(labels) < len(paths):
        report.notes.append(f"{len(paths) - len(labels)} image(s) have no label file")
    errors = []
    if jobs:  # a finished store needs no cluster
        with dask_client(workers, scheduler, connect_timeout) as client:
            store = BatchStore.open(out, run, overwrite=overwrite)
            removed = store.remove_incomplete()
            if removed:
                report.notes.append(f"removed {len(removed)} half-written image(s) to redo them")
            errors = _compute(client, jobs, store, report, progress)
    else:
        store = BatchStore.open(out, run)
    error_table = pd.DataFrame(errors, columns=["image", "source", "error"])
    report.failed = len(error_table)
    report.tables = store.write_run_tables(error_table)
    return report


def _compute(client, jobs, store, report, progress) -> list[dict]:
    """Run `jobs` on Dask, writing each result as it arrives; return the error rows."""
    from distributed import as_completed

    errors = []
    in_process = store.url.startswith("memory://")
    with Progress(len(jobs) + report.skipped, report.skipped, progress) as bar:
        keys = [f"analyse-{j.name}" for j in jobs]
        if in_process:
            futures = client.map(analyse, jobs, pure=False, key=keys)
        else:
            futures = client.map(analyse_into, jobs, store_url=store.url, pure=False, key=keys)
        by_key = {f.key: j for f, j in zip(futures, jobs, strict=True)}
        try:
            for future in as_completed(futures):
                job = by_key[future.key]
                result = _result(future, job)
                future.release()
                if in_process and not result.get("error"):
                    write_result(store, result)
                    result = summary_of(result)
                if result.get("error"):
                    errors.append({"image": job.name, "source": job.source,
                                   "error": result["error"]})  # fmt: skip
                    bar.advance(failed=True)
                    continue
                report.analysed += 1
                report.cells += result["n_cells"]
                bar.advance(result["n_cells"])
        except BaseException:
            client.cancel(futures)
            raise
    return errors


def _result(future, job: Job) -> dict:
    """The future's result; a dead worker becomes an error row, a bad model stops all."""
    from distributed import KilledWorker

    from ..model.classify import ModelError

    try:
        return future.result()
    except KilledWorker:
        return {"error": "the worker analysing this image died (out of memory or killed); "
                "it is retried on the next run"}  # fmt: skip
    except ModelError as error:
        raise BatchError(f"The model cannot be used: {error}") from None
    except StoreError:
        raise  # the store cannot take more (e.g. a full disk): stop, keep what is done
    except ModuleNotFoundError as error:
        raise BatchError(
            f"A Dask worker cannot import {error.name}: install napari-leukemia in the "
            "workers' Python environment."
        ) from None
    except Exception as error:  # noqa: BLE001 - one failing image must not stop the run
        return {"error": f"analysis failed: {type(error).__name__}: {error}"}


__all__ = ["BatchError", "BatchReport", "ClusterError", "StoreError", "run_batch"]
