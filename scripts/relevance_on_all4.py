"""Where does the bundled model's relevance fall on real all4 fields? Cells or not?

Runs the whole chain on real images: the bundled cell model explains the most
confident detected cells of a fixed, seeded sample of ``all4`` fields with several
attribution methods; the dataset authors' ``all4_segmented`` masks give a cell /
not-cell label image (plus the scale-bar box); `quantify_many` + `summarize` give the
share of relevance on cells per method. Writes long and summary CSVs, markdown tables
and run.json to ``--out`` and, with ``--figures DIR``, two figures. Existing outputs
are never replaced without ``--overwrite``.

Decisions (see docs/relevance_on_real_data.md):

* Sample (default 20 per class, seed 0): for each class (Benign, Early, Pre, Pro),
  the fields of the model's own held-out *test* split (from the model metadata; all
  fields when it has none) in a seeded random order; the first `--per-class` fields
  whose cleaned mask covers at least 1 % of the field and with at least one detected
  cell are used.
* The bundled model is a *cell* model (64x64 ROIs around detected cells). Each of the
  field's `--cells` most confident detected cells is explained on its own ROI for the
  class the model predicts for that cell. Each map is quantified on its ROI grid (the
  label image is sampled onto it with the ROI transform), so every relevance value is
  used once and the natural baseline is the cell's share of the ROI's area.
* Labels: 1 "cell" = author mask grey value > 15, after removing specks smaller than
  20 pixels and filling holes; 3 "scale bar" = the fixed box
  rows 202-217, cols 192-215 of the 224x224 fields (where every all4 field has its
  scale bar); 2 "not cell" = everything else. A second label set per explained cell
  uses the cell detector's own mask of that cell (1 "explained cell"), the other
  author-mask cells (2), the scale bar (3) and the rest (4 "red cells & background").
* A "random" control map (uniform noise, seeded) is quantified like the methods.

Usage (from the repository root; needs ../shared/data)::

    .venv/bin/python scripts/relevance_on_all4.py --figures docs/images \
        --out /tmp/relevance_on_all4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CLASS_DIRS = ("Benign", "Early", "Pre", "Pro")
METHODS = (
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "lrp_epsilon",
    "lrp_alpha_beta",
    "deep_taylor",
    "grad_cam",
)
CELL, NOT_CELL, SCALE_BAR = 1, 2, 3
NAMES = {CELL: "cell", NOT_CELL: "not cell", SCALE_BAR: "scale bar"}
#: Second label set, per explained cell: the detector's own mask of that cell.
EXPLAINED, OTHER_CELLS, REST = 1, 2, 4
NAMES_EXPLAINED = {
    EXPLAINED: "explained cell",
    OTHER_CELLS: "other cells",
    SCALE_BAR: "scale bar",
    REST: "red cells & background",
}
#: Scale bar + its text in every 224x224 all4 field (rows, cols; end exclusive).
SCALE_BAR_BOX = (slice(202, 218), slice(192, 216))
EXAMPLE_METHODS = ("gradient_x_input", "lrp_epsilon", "grad_cam")


def cell_labels(segmented: np.ndarray, min_speck: int = 20, grey: float = 15.0) -> np.ndarray:
    """Cell / not-cell / scale-bar labels from an ``all4_segmented`` image."""
    from scipy import ndimage as ndi
    from skimage.morphology import remove_small_objects

    gray = np.asarray(segmented, float)
    if gray.ndim == 3:
        gray = gray[..., :3].mean(axis=-1)
    cell = gray > grey
    cell = remove_small_objects(cell, max_size=min_speck - 1) if min_speck > 1 else cell
    cell = ndi.binary_fill_holes(cell)
    labels = np.full(gray.shape, NOT_CELL, np.uint8)
    labels[cell] = CELL
    if gray.shape == (224, 224):
        labels[SCALE_BAR_BOX] = SCALE_BAR
    return labels


def explained_cell_labels(labels: np.ndarray, cell) -> np.ndarray:
    """Per explained cell: its detector mask, other author-mask cells, scale bar, rest."""
    out = np.where(labels == CELL, OTHER_CELLS, REST).astype(np.uint8)
    out[labels == SCALE_BAR] = SCALE_BAR
    r0, c0, r1, c1 = cell.bbox
    window = out[r0:r1, c0:c1]
    window[np.asarray(cell.mask, bool)] = EXPLAINED
    return out


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def pick_sample(data: Path, loaded, per_class: int, seed: int, n_cells: int, min_cell: float):
    """The seeded sample: (class, file, image, labels, cells) per field, and notes."""
    from napari_leukemia.model.inputs import field_cells

    split = (loaded.info.data or {}).get("split", {})
    test_names = set(split.get("test", []))
    source = "the model's test split" if test_names else "all fields (no split in metadata)"
    rng = np.random.default_rng(seed)
    chosen, skipped = [], {"mask": 0, "no cell": 0}
    for cls in CLASS_DIRS:
        files = sorted((data / "all4" / cls).glob("*.jpg"))
        if test_names:
            files = [f for f in files if f.name in test_names]
        taken = 0
        for i in rng.permutation(len(files)):
            if taken == per_class:
                break
            path = files[i]
            seg_path = data / "all4_segmented" / cls / path.name
            if not seg_path.is_file():
                skipped["mask"] += 1
                continue
            image = read_rgb(path)
            labels = cell_labels(read_rgb(seg_path))
            if (labels == CELL).mean() < min_cell:
                skipped["mask"] += 1
                continue
            cells = field_cells(image)[:n_cells]
            if not cells:
                skipped["no cell"] += 1
                continue
            chosen.append(
                {"class": cls, "path": path, "image": image, "labels": labels, "cells": cells}
            )
            taken += 1
        if taken < per_class:
            print(f"warning: only {taken} usable {cls} fields", file=sys.stderr)
    return chosen, source, skipped


def explain_sample(sample, loaded, methods, seed: int):
    """Per cell and method: the ROI map and its transform (quantify items), and field maps."""
    from napari_leukemia.explain import explain_full

    rng = np.random.default_rng(seed + 1)
    items, items_cell, field_maps, roi_maps, calls = [], [], {}, {}, []
    timings = {m: 0.0 for m in methods}
    for f, field in enumerate(sample):
        name = field["path"].name
        for k, cell in enumerate(field["cells"]):
            ids = {"image": name, "class": field["class"], "cell": k + 1}
            own = explained_cell_labels(field["labels"], cell)
            transform = None
            for method in methods:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ex = explain_full(field["image"], method, loaded, bbox=cell.bbox)
                timings[method] += time.perf_counter() - start
                transform = ex.transform
                item = {
                    "method": method,
                    **ids,
                    "target": ex.target_name,
                    "relevance": ex.input_map,
                    "labels": field["labels"],
                    "transform": ex.transform,
                }
                items.append(item)
                items_cell.append({**item, "labels": own})
                scale = float(np.abs(ex.map).max()) or 1.0
                key = (f, method)
                field_maps[key] = field_maps.get(key, 0.0) + ex.map / scale
                roi_maps[(f, k, method)] = ex.input_map
            calls.append({**ids, "predicted": ex.target_name, "bbox": list(cell.bbox)})
            item = {
                "method": "random",
                **ids,
                "target": "",
                "relevance": rng.random(ex.input_map.shape),
                "labels": field["labels"],
                "transform": transform,
            }
            items.append(item)
            items_cell.append({**item, "labels": own})
    return items, items_cell, field_maps, roi_maps, calls, timings


def complete(long: pd.DataFrame, values, names) -> pd.DataFrame:
    """Add zero rows for labels absent from an explained cell's ROI.

    `quantify` gives no row for a label with no pixel on the map grid; for means over
    *all* explained cells such a label has area, mass, relevant pixels and pointing
    game 0. Its density is undefined (0 / 0) and left empty (NaN), so density means
    are over the cells whose ROI contains the label.
    """
    keys = ["method", "image", "class", "cell"]
    rows = []
    for key, group in long.groupby(keys, sort=False):
        have = set(group["label"])
        for value in values:
            if value in have:
                continue
            row = dict(zip(keys, key, strict=True))
            row.update(
                label=value,
                name=names[value],
                pixels=0,
                area_fraction=0.0,
                relevant_pixels=0,
                relevant_fraction=0.0,
                relevance_mass=0.0,
                relevance_density=np.nan,
                rank_accuracy=0.0,
                pointing_game=False,
                defined=bool(group["defined"].iloc[0]),
                target=group["target"].iloc[0],
            )
            rows.append(row)
    if not rows:
        return long
    return pd.concat([long, pd.DataFrame(rows)], ignore_index=True)


def _fmt(mean: float, sd: float) -> str:
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def _dens(mean: float, sd: float) -> str:
    return f"{mean:.2f} ± {sd:.2f}"


def markdown_table(summary: pd.DataFrame, methods) -> str:
    """Author masks: one row per method, shares on 'cell' (mean ± sd over cells, in %)."""
    cell = summary[summary["label"] == CELL].set_index("method")
    bar = summary[summary["label"] == SCALE_BAR].set_index("method")
    n_bar = int(bar["n"].max() + bar["n_undefined"].max()) if len(bar) else 0
    lines = [
        "| method | cells (undefined) | cell share of ROI area | relevance mass on cell "
        "| relevant pixels on cell | density on cell | pointing game on cell "
        f"| scale bar: mass / area ({n_bar} ROIs reach it) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method in [*methods, "random"]:
        if method not in cell.index:
            continue
        r = cell.loc[method]
        scale = "–"
        if method in bar.index:
            b = bar.loc[method]
            scale = f"{100 * b['relevance_mass_mean']:.1f} / {100 * b['area_fraction_mean']:.1f}"
        lines.append(
            f"| {method} | {int(r['n'])} ({int(r['n_undefined'])}) "
            f"| {_fmt(r['area_fraction_mean'], r['area_fraction_sd'])} "
            f"| {_fmt(r['relevance_mass_mean'], r['relevance_mass_sd'])} "
            f"| {_fmt(r['relevant_fraction_mean'], r['relevant_fraction_sd'])} "
            f"| {_dens(r['relevance_density_mean'], r['relevance_density_sd'])} "
            f"| {100 * r['pointing_game_mean']:.0f} % "
            f"| {scale} |"
        )
    return "\n".join(lines)


def markdown_table_explained(summary: pd.DataFrame, methods) -> str:
    """Detector masks: mass and density on the explained cell, other cells and the rest."""
    parts = {v: summary[summary["label"] == v].set_index("method") for v in NAMES_EXPLAINED}
    lines = [
        "| method | explained cell: area / mass (%) | density | pointing game "
        "| other cells: area / mass (%) | red cells & background: area / mass (%) |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def area_mass(frame, method):
        if method not in frame.index:
            return "–"
        r = frame.loc[method]
        mass = _fmt(r["relevance_mass_mean"], r["relevance_mass_sd"])
        return f"{100 * r['area_fraction_mean']:.1f} / {mass}"

    for method in [*methods, "random"]:
        own = parts[EXPLAINED]
        if method not in own.index:
            continue
        r = own.loc[method]
        lines.append(
            f"| {method} | {area_mass(own, method)} "
            f"| {_dens(r['relevance_density_mean'], r['relevance_density_sd'])} "
            f"| {100 * r['pointing_game_mean']:.0f} % "
            f"| {area_mass(parts[OTHER_CELLS], method)} "
            f"| {area_mass(parts[REST], method)} |"
        )
    return "\n".join(lines)


def excess_table(long: pd.DataFrame, value: int, methods) -> str:
    """Relevance mass minus area share on one label, in percentage points, by class.

    The overall mean has a 95 % t-interval over per-field means (cells of one field are
    not independent); class columns are means over that class's cells.
    """
    from scipy import stats

    data = long[long["label"] == value].copy()
    data["excess"] = data["relevance_mass"] - data["area_fraction"]
    classes = [c for c in CLASS_DIRS if c in set(data["class"])]
    lines = [
        "| method | mass − area (pp), 95 % CI over fields | " + " | ".join(classes) + " |",
        "|---|---:|" + "---:|" * len(classes),
    ]
    for method in [*methods, "random"]:
        part = data[data["method"] == method]
        if part.empty:
            continue
        per_field = part.groupby("image")["excess"].mean()
        n = len(per_field)
        mean = float(per_field.mean())
        half = (
            float(stats.t.ppf(0.975, n - 1) * per_field.std(ddof=1) / np.sqrt(n)) if n > 1 else 0
        )
        by_class = part.groupby("class")["excess"].mean()
        lines.append(
            f"| {method} | {100 * mean:+.1f} [{100 * (mean - half):+.1f}, "
            f"{100 * (mean + half):+.1f}] | "
            + " | ".join(f"{100 * by_class.get(c, 0.0):+.1f}" for c in classes)
            + " |"
        )
    return "\n".join(lines)


def bar_figure(summary: pd.DataFrame, summary_cell: pd.DataFrame, methods, path, title) -> None:
    """Left: author cell masks; right: the detector's mask of the explained cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained", sharey=True)
    panels = (
        (axes[0], summary, CELL, "author masks (all4_segmented): 'cell'"),
        (axes[1], summary_cell, EXPLAINED, "detector mask of the explained cell"),
    )
    for ax, frame, value, subtitle in panels:
        part = frame[frame["label"] == value].set_index("method")
        order = [m for m in [*methods, "random"] if m in part.index]
        x = np.arange(len(order))
        width = 0.38
        for j, (metric, colour, label) in enumerate(
            (
                ("relevance_mass", "tab:purple", "relevance mass"),
                ("relevant_fraction", "tab:orange", "relevant pixels (> mean)"),
            )
        ):
            means = 100 * part.loc[order, f"{metric}_mean"].to_numpy(float)
            sds = 100 * part.loc[order, f"{metric}_sd"].to_numpy(float)
            ax.bar(
                x + (j - 0.5) * width, means, width, yerr=sds, capsize=2, color=colour, label=label
            )
        area = 100 * part.loc[order, "area_fraction_mean"].to_numpy(float)
        ax.scatter(x, area, marker="_", s=900, color="black", zorder=3, label="share of ROI area")
        ax.set_xticks(x, order, rotation=25, ha="right")
        ax.set_ylim(0, 100)
        ax.set_title(subtitle, fontsize="medium")
    axes[0].set_ylabel("% on the region (mean ± sd over explained cells)")
    axes[0].legend(fontsize="small", loc="upper left", frameon=False)
    fig.suptitle(title, fontsize="medium")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def roi_labels(labels: np.ndarray, transform, shape) -> np.ndarray:
    """`labels` sampled onto a ROI grid (nearest pixel centre), as `quantify` does."""
    rows = transform.translate[0] + np.arange(shape[0]) * transform.scale[0]
    cols = transform.translate[1] + np.arange(shape[1]) * transform.scale[1]
    r = np.floor(rows + 0.5).astype(int)
    c = np.floor(cols + 0.5).astype(int)
    r_ok = (r >= 0) & (r < labels.shape[0])
    c_ok = (c >= 0) & (c < labels.shape[1])
    r = np.clip(r, 0, labels.shape[0] - 1)
    c = np.clip(c, 0, labels.shape[1] - 1)
    return np.where(r_ok[:, None] & c_ok[None, :], labels[np.ix_(r, c)], 0)


def example_figure(sample, field_maps, roi_maps, loaded, f: int, path: Path, methods) -> None:
    """Top: the field, its labels and summed field maps; bottom: the first cell's ROI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    from napari_leukemia.model.inputs import cell_input

    field = sample[f]
    labels = field["labels"]
    shown = [m for m in EXAMPLE_METHODS if m in methods] or list(methods)[:3]
    n = 2 + len(shown)
    fig, axes = plt.subplots(2, n, figsize=(3.0 * n, 6.4), layout="constrained")
    cmap = ListedColormap(["#ffffff", "#d95f02", "#d0d0d0", "#1b9e77"])

    def show_map(ax, m, mask, title):
        lim = float(np.abs(m).max()) or 1.0
        signed = bool((m < 0).any())
        ax.imshow(m, cmap="bwr" if signed else "inferno", vmin=-lim if signed else 0, vmax=lim)
        ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.7)
        ax.set_title(title, fontsize="small")

    top = axes[0]
    top[0].imshow(field["image"])
    for k, cell in enumerate(field["cells"]):
        r0, c0, r1, c1 = cell.bbox
        top[0].add_patch(
            Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec="yellow", lw=1)
        )
        top[0].text(c0, r0 - 2, str(k + 1), color="yellow", fontsize=8)
    top[0].set_title(
        f"{field['path'].name}\nexplained cells (most confident first)", fontsize="small"
    )
    top[1].imshow(labels, cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    top[1].set_title("labels: cell (orange), not cell,\nscale bar (green)", fontsize="small")
    for ax, method in zip(top[2:], shown, strict=True):
        show_map(
            ax,
            field_maps[(f, method)],
            labels == CELL,
            f"{method}: field\n(per-cell maps / max|.|, summed)",
        )

    bottom = axes[1]
    cell = field["cells"][0]
    x, transform = cell_input(field["image"], cell.bbox, loaded.info.input)
    roi_lab = roi_labels(labels, transform, x.shape[:2])
    bottom[0].imshow(np.clip(x, 0, 1))
    bottom[0].contour(roi_lab == CELL, levels=[0.5], colors="lime", linewidths=0.7)
    bottom[0].set_title("cell 1: model input (64x64 ROI)\ncell mask outlined", fontsize="small")
    bottom[1].imshow(roi_lab, cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    bottom[1].set_title("labels on the ROI grid\n(white: outside the field)", fontsize="small")
    for ax, method in zip(bottom[2:], shown, strict=True):
        m = roi_maps[(f, 0, method)]
        share = float(
            np.clip(m, 0, None)[roi_lab == CELL].sum() / max(np.clip(m, 0, None).sum(), 1e-12)
        )
        show_map(ax, m, roi_lab == CELL, f"{method}: cell 1\nmass on cell {100 * share:.0f} %")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def best_example(sample, loaded) -> int:
    """The field whose first cell's ROI lies inside the field and whose author mask
    covers most of the detector's mask of that cell (a clear, not a typical, case)."""
    from napari_leukemia.roi import square_window

    best, best_score = 0, -1.0
    for f, field in enumerate(sample):
        cell = field["cells"][0]
        top, left, bottom, right = square_window(
            cell.bbox, loaded.info.input.margin, field["labels"].shape
        )
        rows, cols = field["labels"].shape
        if top < 0 or left < 0 or bottom > rows or right > cols:
            continue
        r0, c0, r1, c1 = cell.bbox
        mask = np.asarray(cell.mask, bool)
        score = float((field["labels"][r0:r1, c0:c1][mask] == CELL).mean())
        if score > best_score:
            best, best_score = f, score
    return best


def refuse_existing(paths, overwrite: bool) -> None:
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise SystemExit(f"Refusing to overwrite {existing}; pass --overwrite to replace them.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--cells", type=int, default=3, help="cells explained per field")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", default="mean")
    parser.add_argument("--sign", default="positive")
    parser.add_argument("--min-cell", type=float, default=0.01, help="min mask share of a field")
    parser.add_argument("--out", type=Path, default=Path("/tmp/relevance_on_all4"))
    parser.add_argument("--figures", type=Path, default=None, help="e.g. docs/images")
    parser.add_argument("--example", default=None, help="file name of the example field")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    if not (args.data / "all4").is_dir() or not (args.data / "all4_segmented").is_dir():
        print(f"all4 / all4_segmented not found under {args.data}; nothing to do.")
        return 0
    from napari_leukemia.model.classify import classify, load_model
    from napari_leukemia.quantify import METRICS, quantify_many, summarize

    outputs = [
        args.out / n
        for n in (
            "long.csv",
            "summary.csv",
            "table.md",
            "run.json",
            "long_explained_cell.csv",
            "summary_explained_cell.csv",
        )
    ]
    figures = []
    if args.figures is not None:
        figures = [
            args.figures / "relevance_on_all4_bars.png",
            args.figures / "relevance_on_all4_example.png",
        ]
    refuse_existing(outputs + figures, args.overwrite)
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    loaded = load_model(args.model)
    sample, source, skipped = pick_sample(
        args.data, loaded, args.per_class, args.seed, args.cells, args.min_cell
    )
    print(f"{len(sample)} fields from {source}; skipped {skipped}", flush=True)
    field_calls = []
    for field in sample:
        result = classify(field["image"], loaded)
        field_calls.append(
            {"image": field["path"].name, "class": field["class"], "call": result.class_name}
        )
    items, items_cell, field_maps, roi_maps, calls, timings = explain_sample(
        sample, loaded, args.methods, args.seed
    )
    print(f"{len(items)} maps in {time.perf_counter() - started:.0f} s", flush=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        long = quantify_many(items, args.threshold, sign=args.sign, label_names=NAMES)
        long_cell = quantify_many(
            items_cell, args.threshold, sign=args.sign, label_names=NAMES_EXPLAINED
        )
    for w in caught:
        print(f"note: {str(w.message)[:300]}", file=sys.stderr)
    n_roi_without_cell = int(
        (long.groupby(["method", "image", "cell"])["label"].apply(lambda v: CELL not in set(v)))
        .groupby("method")
        .sum()
        .max()
    )
    long = complete(long, [CELL], NAMES)
    long_cell = complete(long_cell, [EXPLAINED, OTHER_CELLS, REST], NAMES_EXPLAINED)
    metrics = ("area_fraction", *METRICS)
    summary = summarize(long, by=("method", "label"), metrics=metrics)
    summary_cell = summarize(long_cell, by=("method", "label"), metrics=metrics)
    table = markdown_table(summary, args.methods)
    table_cell = markdown_table_explained(summary_cell, args.methods)
    excess = excess_table(long, CELL, args.methods)
    excess_cell = excess_table(long_cell, EXPLAINED, args.methods)
    tables = [
        "Author masks, label 'cell':",
        table,
        "Detector mask of the explained cell:",
        table_cell,
        "Relevance mass minus area share on the author-mask 'cell':",
        excess,
        "Relevance mass minus area share on the explained cell:",
        excess_cell,
    ]
    print("\n\n".join(tables))

    truth = {"Benign": "Benign", "Early": "Early Pre-B", "Pre": "Pre-B", "Pro": "Pro-B"}
    field_acc = float(np.mean([c["call"] == truth[c["class"]] for c in field_calls]))
    cell_acc = float(np.mean([c["predicted"] == truth[c["class"]] for c in calls]))
    run = {
        "command": " ".join(sys.argv),
        "model": str(loaded.path or "bundled"),
        "model_sha256": loaded.info.sha256,
        "sample_source": source,
        "skipped": skipped,
        "fields": [f["path"].name for f in sample],
        "n_cells": len(calls),
        "n_rois_without_author_cell_pixels": n_roi_without_cell,
        "field_accuracy": field_acc,
        "cell_accuracy": cell_acc,
        "seconds": round(time.perf_counter() - started, 1),
        "seconds_per_method": {k: round(v, 1) for k, v in timings.items()},
        "threshold": args.threshold,
        "sign": args.sign,
        "cells": calls,
    }
    long.to_csv(outputs[0], index=False)
    summary.to_csv(outputs[1], index=False)
    outputs[2].write_text("\n\n".join(tables) + "\n")
    long_cell.to_csv(outputs[4], index=False)
    summary_cell.to_csv(outputs[5], index=False)
    outputs[3].write_text(json.dumps(run, indent=1) + "\n")
    print(
        f"field accuracy {field_acc:.3f}, cell (per-cell call vs field label) {cell_acc:.3f}; "
        f"{run['seconds']} s; wrote {args.out}",
        flush=True,
    )
    if figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        title = (
            f"Bundled model, {len(sample)} all4 fields, {len(calls)} cells: "
            f"share of relevance on the cell (threshold {args.threshold}, sign {args.sign})"
        )
        bar_figure(summary, summary_cell, args.methods, figures[0], title)
        names = [f["path"].name for f in sample]
        f = names.index(args.example) if args.example in names else best_example(sample, loaded)
        example_figure(sample, field_maps, roi_maps, loaded, f, figures[1], args.methods)
        print(f"figures: {figures[0]}, {figures[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
