"""The ``napari-leukemia`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# plain integers, imported here so `--help` names the defaults without loading a model
from .images import MAX_PIXELS
from .tiles import LARGE_PIXELS

ARCHITECTURE_NAMES = ("default", "default-cell", "default-field", "seed000", "seed004")


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    if args.headless or not demo.has_display():
        demo.run_headless(args.out, seed=args.seed)
        return 0
    import napari

    demo.run_viewer(seed=args.seed)
    napari.run()
    return 0


def _train(args: argparse.Namespace) -> int:
    """Run training; a run that saves nothing or fails to save exits non-zero."""
    from .model.training import NothingSaved, Recipe, train

    kept = f"nothing was saved and any existing {args.out} (and its .json) is unchanged"
    try:
        train(
            args.data_dir,
            args.out,
            arch=args.arch,
            epochs=args.epochs,
            batch_size=args.batch_size,
            patience=args.patience,
            seed=args.seed,
            max_minutes=args.max_minutes,
            max_images=args.max_images,
            overwrite=args.overwrite,
            recipe=Recipe(
                stain_jitter=args.stain_jitter,
                focus_penalty=args.focus_penalty,
                mask_jitter=args.mask_jitter,
                init=None if args.init is None else str(args.init),
            ),
        )
    except NothingSaved as error:
        print(f"napari-leukemia train: {error}", file=sys.stderr)
        return 130 if error.interrupted else 1
    except KeyboardInterrupt:
        print(f"napari-leukemia train: interrupted; {kept}.", file=sys.stderr)
        return 130
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError as error:  # e.g. disk full while saving
        print(f"napari-leukemia train: {error}; {kept}.", file=sys.stderr)
        return 1
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .demo import new_output_dir
    from .model.classify import load_model
    from .model.evaluation import evaluate_folder, plot_confusion_matrix, plot_history

    model = load_model(args.model)
    result = evaluate_folder(args.data_dir, model, split=args.split)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print_metrics(result)
    out = args.plots or new_output_dir(prefix="evaluate")
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_confusion_matrix(result, out / "confusion_matrix.png")]
    curves = plot_history(model.info.history, out / "training_curves.png")
    written += [curves] if curves else []
    for path in written:
        print(f"wrote {path}")
    return 0


def _print_metrics(result: dict) -> None:
    print(f"images: {result['n_images']} ({result['split']}), skipped {len(result['skipped'])}")
    print(f"accuracy: {result['accuracy']:.4f}")
    for name, row in result["per_class"].items():
        print(
            f"  {name:12s} precision {row['precision']:.3f} recall {row['recall']:.3f} "
            f"F1 {row['f1']:.3f} (n={row['support']})"
        )
    print(
        f"malignant vs benign: sensitivity {result['sensitivity']}, specificity "
        f"{result['specificity']}, false-negative rate {result['false_negative_rate']}"
    )
    print("confusion matrix (rows true, columns predicted):")
    for row in result["confusion_matrix"]:
        print("  " + " ".join(f"{v:5d}" for v in row))
    if "cells" in result:
        print(
            f"cell-level accuracy: {result['cells']['accuracy']:.4f} "
            f"(n={result['cells']['n_images']} cells)"
        )


def _json_safe(value):
    """NaN/inf (e.g. P(malignant) of a model without benign classes) as JSON null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _predict(args: argparse.Namespace) -> int:
    from .images import read_image
    from .model.classify import classify, load_model

    model = load_model(args.model)
    results, failed = [], 0
    for path in args.images:
        try:
            image = read_image(path)
        except Exception as error:  # noqa: BLE001 - report and go on with the others
            results.append({"image": str(path), "error": f"unreadable: {error}"})
            failed += 1
            continue
        try:
            call = classify(image, model, max_pixels=args.max_pixels)
            results.append({"image": str(path), **call.as_dict()})
        except ValueError as error:
            results.append({"image": str(path), "error": str(error)})
            failed += 1
    if args.json:
        print(json.dumps(_json_safe(results if len(results) > 1 else results[0]), indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['image']}: ERROR {r['error']}")
                continue
            probs = ", ".join(f"{k} {v:.3f}" for k, v in r["probabilities"].items())
            print(
                f"{r['image']}: {r['class']} (P malignant {r['malignant_probability']:.3f}; "
                f"{probs}; {r['kind']})"
            )
            for note in r["notes"]:
                print(f"  note: {note}")
    return 1 if failed == len(results) else 0


def _calibrate(args: argparse.Namespace) -> int:
    from .model.reliability import fit_model

    try:
        fitted = fit_model(args.model, args.data_dir, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"napari-leukemia calibrate: {error}", file=sys.stderr)
        return 2
    ood, calibration = fitted["ood"], fitted["calibration"]
    print(
        f"OOD threshold {ood['threshold']:.1f}: flagged {ood['flagged']['val']:.1%} of "
        f"validation and {ood['flagged']['test']:.1%} of test cells. Temperature "
        f"{calibration['temperature']:.3f}: test ECE {calibration['test']['ece'][0]:.4f} -> "
        f"{calibration['test']['ece'][1]:.4f}. Written to {Path(args.model).with_suffix('.json')}."
    )
    return 0


def _methods(text: str) -> list[str]:
    """``grad_cam,lrp_epsilon`` -> a checked list of method ids."""
    from .explain.methods import METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(METHODS)}"
        )
    return methods


def _max_pixels(text: str) -> int | None:
    """A pixel count for ``--max-pixels``: a whole number, or 0 / "none" for no limit."""
    if text.strip().lower() in ("0", "none"):
        return None
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a pixel count; give a whole number such as 25000000, "
            "or 0 or none for no limit."
        )
    return value


def _bbox(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected r0,c0,r1,c1 (four integers), got {text!r}")
    return values


def _target(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def _explain(args: argparse.Namespace) -> int:
    from .batch.single import explain_to_files

    written = explain_to_files(
        args.image, args.method, args.out, cell=args.cell, bbox=args.bbox,
        target=args.target, model=args.model,
    )  # fmt: skip
    for path in written:
        print(f"wrote {path}")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from .batch import run_batch
    from .batch.cluster import ClusterError

    kept = "finished images are kept; run the same command again to resume."
    try:
        report = run_batch(
            args.inputs, args.out, methods=args.methods, labels_dir=args.labels,
            model=args.model, workers=args.workers, scheduler=args.scheduler,
            overwrite=args.overwrite, progress=not args.quiet,
            connect_timeout=args.connect_timeout, max_pixels=args.max_pixels,
        )  # fmt: skip
    except ClusterError as error:
        print(f"napari-leukemia batch: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-leukemia batch: interrupted; {kept}", file=sys.stderr)
        return 130
    except OSError as error:  # e.g. disk full or the store's folder went away
        print(f"napari-leukemia batch: writing {args.out} failed ({error}); {kept}",
              file=sys.stderr)  # fmt: skip
        return 1
    for note in report.notes:
        print(f"note: {note}")
    print(
        f"{report.store}: analysed {report.analysed} image(s) ({report.cells} cells), "
        f"skipped {report.skipped} finished, {report.failed} failed"
        + (" (see tables/errors.parquet)" if report.failed else "")
    )
    return 1 if report.failed and not (report.analysed or report.skipped) else 0


def _add_explain(commands) -> None:
    explain = commands.add_parser(
        "explain",
        help="attribution maps of one image as .npy, PNG and JSON",
        description="Explain one cell of IMAGE (default: the most confident detected cell) "
        "with each method; writes STEM_METHOD.npy (the map on the image grid), an overlay "
        "PNG with a colour bar and a JSON of the call and parameters. Existing files are "
        "never overwritten.",
    )
    explain.add_argument("image", type=Path, help="image file")
    explain.add_argument(
        "--method", type=_methods, required=True, help="method id(s), comma-separated"
    )
    where = explain.add_mutually_exclusive_group()
    where.add_argument("--cell", type=int, default=None, help="detected cell N (1 = best)")
    where.add_argument("--bbox", type=_bbox, default=None, help="cell box r0,c0,r1,c1")
    explain.add_argument(
        "--target", type=_target, default=None, help="class index or name (default: predicted)"
    )
    explain.add_argument("--model", type=Path, default=None, help="model (default: bundled)")
    explain.add_argument("--out", type=Path, required=True, help="output folder")
    explain.set_defaults(func=_explain)


def _add_batch(commands) -> None:
    batch = commands.add_parser(
        "batch",
        help="detect, classify, explain and quantify many images into one OME-Zarr store",
        description="Analyse every INPUT image (files, folders, glob patterns or text files "
        "listing paths) on a Dask cluster into one OME-Zarr (NGFF 0.5) store with Parquet "
        "tables. Re-running skips finished images.",
    )
    batch.add_argument("inputs", nargs="+", help="images, folders, globs or .txt lists")
    batch.add_argument(
        "--out", required=True, help="store folder or fsspec URL (e.g. s3://bucket/study.zarr)"
    )
    batch.add_argument(
        "--methods", type=_methods, default=["grad_cam"], help="method ids (default grad_cam)"
    )
    batch.add_argument("--labels", type=Path, default=None, help="folder of label images")
    batch.add_argument("--model", type=Path, default=None, help="model (default: bundled)")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="local worker processes")
    where.add_argument("--scheduler", default=None, help="existing cluster, tcp://host:port")
    batch.add_argument(
        "--connect-timeout", type=float, default=5.0, help="seconds to reach --scheduler"
    )
    batch.add_argument(
        "--max-pixels", type=_max_pixels, default=LARGE_PIXELS, metavar="N",
        help="images of more than N pixels (rows x cols) are read lazily and analysed "
        "tile by tile, their maps kept per cell on the model input (default %(default)s, "
        "4096 x 4096); 0 or none: every image is read whole, whatever its size",
    )  # fmt: skip
    batch.add_argument("--overwrite", action="store_true", help="replace a store of another run")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(func=_batch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-leukemia",
        description="Preprocess, classify and explain ALL blood-smear images.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run the main job on the built-in sample smear",
        description="Open napari with the sample smear and the plugin's widgets; with no "
        "display (or --headless) run the same steps and write PNGs and a CSV.",
    )
    demo.add_argument("--headless", action="store_true", help="do not open a window")
    demo.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new folder under ./napari-leukemia-output)",
    )
    demo.add_argument("--seed", type=int, default=0, help="sample smear seed (default 0)")
    demo.set_defaults(func=_demo)

    train = commands.add_parser(
        "train",
        help="train a classifier on a class-per-folder dataset",
        description="Train on DATA_DIR/<class>/*.jpg with a duplicate-aware stratified "
        "80/10/10 split, augmentation and early stopping; saves MODEL.keras + MODEL.json.",
    )
    train.add_argument("data_dir", type=Path, help="folder with one sub-folder per class")
    train.add_argument("--out", type=Path, required=True, help="model file to write (.keras)")
    train.add_argument(
        "--arch",
        default="default",
        choices=sorted(ARCHITECTURE_NAMES),
        help="architecture (default: %(default)s)",
    )
    train.add_argument(
        "--epochs", type=int, default=60, help="maximum epochs, at least 1 (%(default)s)"
    )
    train.add_argument("--batch-size", type=int, default=64, help="batch size (%(default)s)")
    train.add_argument(
        "--patience", type=int, default=10, help="early-stopping patience in epochs (%(default)s)"
    )
    train.add_argument("--seed", type=int, default=0, help="split and training seed")
    train.add_argument(
        "--max-minutes",
        type=float,
        default=40.0,
        help="stop after this many minutes, keeping the best weights",
    )
    train.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="use only this many training images (quick runs)",
    )
    train.add_argument(
        "--stain-jitter",
        type=float,
        default=0.0,
        help="random stain (HED) jitter strength, e.g. 0.1 (default 0: off)",
    )
    train.add_argument(
        "--focus-penalty",
        type=float,
        default=0.0,
        help="weight of the penalty on input gradients outside the cell, e.g. 1 "
        "(cell-only models; default 0: off)",
    )
    train.add_argument(
        "--mask-jitter",
        type=int,
        default=0,
        help="grow training cells' masks this many pixels more and shave a random 0 to "
        "that many off each input again, so calls do not hang on the mask's exact edge "
        "(cell-only models; e.g. 3; default 0: off)",
    )
    train.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this model's weights (same architecture and split): fine-tuning",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.set_defaults(func=_train)

    calibrate = commands.add_parser(
        "calibrate",
        help="fit a cell model's OOD score and temperature on its recorded split",
        description="Fit the out-of-distribution score (Mahalanobis on the penultimate "
        "features; threshold: 99th percentile of validation cells) and the temperature of "
        "the probabilities (validation NLL) of MODEL on the split recorded in its metadata, "
        "and write them into MODEL.json. `train` does this itself for new cell models.",
    )
    calibrate.add_argument("model", type=Path, help="the model file (.keras)")
    calibrate.add_argument("data_dir", type=Path, help="the folder the model was trained from")
    calibrate.add_argument("--overwrite", action="store_true", help="fit again when present")
    calibrate.set_defaults(func=_calibrate)

    evaluate = commands.add_parser(
        "evaluate",
        help="accuracy, per-class metrics, sensitivity/specificity on a folder",
        description="Evaluate a model on DATA_DIR/<class>/ images: accuracy, per-class "
        "precision/recall/F1, confusion matrix, and malignant-vs-benign sensitivity, "
        "specificity and false-negative rate. Writes PNG plots unless --json.",
    )
    evaluate.add_argument("data_dir", type=Path, help="folder with one sub-folder per class")
    evaluate.add_argument("--model", type=Path, default=None, help="model (default: bundled)")
    evaluate.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default=None,
        help="only the images of this part of the model's recorded split",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--plots", type=Path, default=None, help="folder for the PNG plots")
    evaluate.set_defaults(func=_evaluate)

    predict = commands.add_parser(
        "predict",
        help="class and probabilities per image",
        description="Classify each IMAGE (a smear field: a cell model averages its cells).",
    )
    predict.add_argument("images", nargs="+", type=Path, help="image files")
    predict.add_argument("--model", type=Path, default=None, help="model (default: bundled)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.add_argument(
        "--max-pixels", type=_max_pixels, default=MAX_PIXELS, metavar="N",
        help="refuse images of more than N pixels (rows x cols), which cost about 0.5 s "
        "and 80 MB per megapixel (default %(default)s; 0 or none: no limit); use "
        "`batch` for larger images",
    )  # fmt: skip
    predict.set_defaults(func=_predict)
    _add_explain(commands)
    _add_batch(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"napari-leukemia {args.command}: interrupted.", file=sys.stderr)
        return 130
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"napari-leukemia {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
