"""Turn the INPUT arguments of ``batch`` (folders, globs, text files) into image paths."""

from __future__ import annotations

import glob
from pathlib import Path

#: File suffixes treated as images when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Suffixes of a text file that lists one image path per line.
LIST_SUFFIXES = (".txt", ".lst", ".list")


class InputError(ValueError):
    """The inputs name no usable image; the message says which argument and why."""


def _folder_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _listed(text_file: Path) -> list[Path]:
    """Paths listed one per line (blank lines and ``#`` comments skipped), relative to
    the list file's folder when not absolute."""
    paths = []
    for line in text_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() else text_file.parent / path)
    return paths


def _expand(argument: str) -> list[Path]:
    path = Path(argument).expanduser()
    if path.is_dir():
        found = _folder_images(path)
        if not found:
            raise InputError(
                f"The folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)}); "
                "point INPUT at the folder of the images."
            )
        return found
    if path.is_file():
        return _listed(path) if path.suffix.lower() in LIST_SUFFIXES else [path]
    if glob.has_magic(argument):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        found = [p for p in found if p.is_file()]
        if not found:
            raise InputError(f"The pattern {argument!r} matches no file.")
        return found
    raise InputError(f"{argument} does not exist (not a file, a folder or a glob pattern).")


def collect_inputs(arguments) -> list[Path]:
    """Image paths from folders, glob patterns, text files of paths and image files.

    Each path appears once, in the order given (folders and globs sorted). Listed files
    that do not exist are kept: the run records them in its errors table.
    """
    if not arguments:
        raise InputError("No INPUT given: name image files, folders, globs or a list file.")
    seen: dict[Path, None] = {}
    for argument in arguments:
        for path in _expand(str(argument)):
            seen.setdefault(path.resolve(), None)
    if not seen:
        raise InputError("The inputs list no image.")
    return list(seen)
