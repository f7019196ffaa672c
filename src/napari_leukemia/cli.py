"""The ``napari-leukemia`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    if args.headless or not demo.has_display():
        demo.run_headless(args.out, seed=args.seed)
        return 0
    import napari

    demo.run_viewer(seed=args.seed)
    napari.run()
    return 0


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
        "--out", type=Path, default=None, help="output folder (default: a new folder "
        "under ./napari-leukemia-output)"
    )
    demo.add_argument("--seed", type=int, default=0, help="sample smear seed (default 0)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"napari-leukemia {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
