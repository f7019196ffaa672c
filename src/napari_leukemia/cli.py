"""The ``napari-leukemia`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ARCHITECTURE_NAMES = ("default", "default-field", "seed000", "seed004")


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
    from .model.training import NothingSaved, train

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
            results.append({"image": str(path), **classify(image, model).as_dict()})
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
    return 1 if failed == len(results) else 0


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
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.set_defaults(func=_train)

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
    predict.set_defaults(func=_predict)
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
