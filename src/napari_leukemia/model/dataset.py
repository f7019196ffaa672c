"""Class-per-folder image datasets: scanning, duplicate groups and a leak-free split.

The ALL dataset holds byte-identical and near-identical copies of some fields
(../shared/data/SOURCES.md). Images are grouped by content (sha256 and a 256-bit
difference hash) and every group stays on one side of the split, so the test set
never contains a copy of a training image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metadata import CLASS_NAMES, FOLDER_TO_CLASS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


@dataclass
class Dataset:
    """Images of a class-per-folder tree, with labels and duplicate groups."""

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}


def class_names_for(folders: list[str]) -> list[str]:
    """Class names for the given folder names, in the canonical order when known."""
    names = [FOLDER_TO_CLASS.get(f, f) for f in folders]
    if set(names) == set(CLASS_NAMES):
        return list(CLASS_NAMES)
    return sorted(names)


def scan(data_dir: Path | str, class_names: list[str] | None = None) -> Dataset:
    """Find the images in ``data_dir/<class>/``; unreadable files are skipped and listed.

    Raises ValueError when the folder has no class folders, a class folder is empty, or
    no folder is one of `class_names` (e.g. evaluating a model on another dataset).
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of class sub-folders.")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root} has no class sub-folders (e.g. {root}/Benign/*.jpg).")
    names = class_names or class_names_for(folders)
    paths, labels, skipped, fingerprints = [], [], [], []
    for folder in folders:
        name = FOLDER_TO_CLASS.get(folder, folder)
        if name not in names:
            skipped.append((str(root / folder), f"class {name!r} is not one of {names}"))
            continue
        found = 0
        for path in sorted((root / folder).iterdir()):
            if path.is_dir() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((str(path), "not an image file"))
                continue
            try:
                fingerprints.append(fingerprint(path))
            except Exception as error:  # noqa: BLE001 - any unreadable file is skipped
                skipped.append((str(path), f"unreadable: {error}"))
                continue
            paths.append(path)
            labels.append(names.index(name))
            found += 1
        if found == 0:
            raise ValueError(f"The class folder {root / folder} has no readable images.")
    if not paths:
        raise ValueError(
            f"{root} has no folder of the classes {list(names)}; its folders are {folders}. "
            "Name each class folder after a class of the model (the ALL dataset's "
            f"{sorted(FOLDER_TO_CLASS)} also work), or use the model trained on these classes."
        )
    dataset = Dataset(paths, np.asarray(labels, int), list(names), skipped=skipped)
    dataset.groups = duplicate_groups(fingerprints)
    return dataset


def fingerprint(path: Path) -> tuple[str, np.ndarray]:
    """(sha256 of the file, difference hash of the image); raises if unreadable."""
    from ..images import read_image

    data = Path(path).read_bytes()
    image = read_image(path)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 8:
        raise ValueError(f"unexpected image shape {image.shape}")
    return hashlib.sha256(data).hexdigest(), difference_hash(image)


def difference_hash(image: np.ndarray, size: int = 16) -> np.ndarray:
    """256-bit difference hash (dHash) of an image, as a boolean vector."""
    from skimage.transform import resize

    from ..preprocess import grayscale

    gray = resize(grayscale(image), (size, size + 1), anti_aliasing=True)
    return (gray[:, 1:] > gray[:, :-1]).ravel()


def duplicate_groups(fingerprints: list[tuple[str, np.ndarray]], max_distance: int = 24):
    """Group ids such that identical or near-identical images share a group.

    Identical: same sha256. Near-identical: difference hashes at Hamming distance
    <= `max_distance` of 256 bits.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(fingerprints)
    if n == 0:
        return np.zeros(0, int)
    hashes = np.asarray([bits for _, bits in fingerprints], np.float32)
    first_with: dict[str, int] = {}
    pairs = []
    for i, (digest, _) in enumerate(fingerprints):
        if digest in first_with:
            pairs.append((first_with[digest], i))
        first_with.setdefault(digest, i)
    distance = hashes @ (1 - hashes).T + (1 - hashes) @ hashes.T
    rows, cols = np.nonzero(np.triu(distance <= max_distance, k=1))
    rows = np.concatenate([rows, [p[0] for p in pairs]]).astype(int)
    cols = np.concatenate([cols, [p[1] for p in pairs]]).astype(int)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def split(dataset: Dataset, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Seeded, class-stratified train/val/test indices keeping duplicate groups together."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_folds = int(round(1.0 / min(fractions[1:])))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(dataset), int)
    for k, (_, held) in enumerate(
        folds.split(np.zeros(len(dataset)), dataset.labels, dataset.groups)
    ):
        fold_of[held] = k
    n_val = int(round(fractions[1] * n_folds))
    n_test = int(round(fractions[2] * n_folds))
    test = np.flatnonzero(fold_of < n_test)
    val = np.flatnonzero((fold_of >= n_test) & (fold_of < n_test + n_val))
    train = np.flatnonzero(fold_of >= n_test + n_val)
    return {"train": train, "val": val, "test": test}
