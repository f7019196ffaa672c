"""What a saved model needs beside its weights: classes, inputs, provenance, metrics.

Stored as JSON next to the model file (``model.keras`` → ``model.json``) so it can be
read without TensorFlow and by people.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import safe_files

CLASS_NAMES = ("Benign", "Early Pre-B", "Pre-B", "Pro-B")
#: Dataset folder name → class name (the all4 folders are Benign/Early/Pre/Pro).
FOLDER_TO_CLASS = {"Benign": "Benign", "Early": "Early Pre-B", "Pre": "Pre-B", "Pro": "Pro-B"}
BENIGN_CLASSES = ("Benign",)


@dataclass
class InputSpec:
    """How an image becomes the model's input.

    kind: "field" (the whole image, resized) or "cell" (a square ROI around one
    detected cell, `margin` of context, resized). pipeline: "rgb" (float RGB in [0, 1])
    or "document000" (gray + unsharp mask, document 000). context (cell models): "keep"
    (the ROI as it is) or "cell" (only the cell's grown detector mask, the rest blanked;
    see `napari_leukemia.model.cell_context`).
    """

    kind: str = "cell"
    size: tuple[int, int] = (64, 64)
    pipeline: str = "rgb"
    margin: float = 0.15
    context: str = "keep"

    @property
    def channels(self) -> int:
        return 1 if self.pipeline == "document000" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (*self.size, self.channels)


@dataclass
class ModelInfo:
    """Metadata of a trained model (see module docstring)."""

    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    input: InputSpec = field(default_factory=InputSpec)
    architecture: str = "default"
    benign_classes: list[str] = field(default_factory=lambda: list(BENIGN_CLASSES))
    data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    command: str = ""
    training: dict = field(default_factory=dict)
    ood: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    sha256: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def benign_indices(self) -> list[int] | None:
        """Indices of the benign classes; None when that cannot be known.

        Unknown means `benign_classes` names classes of which none is a class of this
        model (e.g. the default "Benign" for a user model with classes "class 0", ...).
        An explicitly empty `benign_classes` means every class is malignant.
        """
        return benign_indices(self.class_names, self.benign_classes)

    @property
    def malignant_indices(self) -> list[int]:
        benign = self.benign_indices or []
        return [i for i in range(len(self.class_names)) if i not in benign]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        values = dict(data)
        spec = values.pop("input", {}) or {}
        if "size" in spec:
            spec["size"] = tuple(spec["size"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(input=InputSpec(**spec), **{k: v for k, v in values.items() if k in known})


def metadata_path(model_path: Path | str) -> Path:
    return Path(model_path).with_suffix(".json")


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_info(model_path: Path | str, info: ModelInfo) -> Path:
    """Write `info` beside the model, with the model file's sha256 filled in.

    Atomic (`safe_files.staged`): an old metadata file stays whole if writing fails.
    """
    info.sha256 = file_sha256(model_path)
    path = metadata_path(model_path)
    with safe_files.staged([path]) as (tmp,):
        tmp.write_text(info.to_json() + "\n")
    return path


def read_info(model_path: Path | str) -> ModelInfo | None:
    """The metadata beside `model_path`, or None when there is none."""
    path = metadata_path(model_path)
    if not path.is_file():
        return None
    try:
        return ModelInfo.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"The model metadata {path} is not valid: {error}") from error


def benign_indices(class_names, benign) -> list[int] | None:
    """Indices of `class_names` listed in `benign` (case-insensitive); None if none is."""
    wanted = {str(name).strip().casefold() for name in benign}
    found = [i for i, name in enumerate(class_names) if str(name).strip().casefold() in wanted]
    return found if found or not wanted else None


def malignant_probability(probabilities: np.ndarray, class_names, benign) -> np.ndarray:
    """P(malignant) = sum of the probabilities of the non-benign classes.

    NaN when no class of the model is among `benign` (see `benign_indices`): a sum
    over every class would always be 1.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    indices = benign_indices(class_names, benign)
    if indices is None:
        return np.full(probabilities.shape[:-1], np.nan)
    mask = np.ones(len(class_names), bool)
    mask[indices] = False
    return probabilities[..., mask].sum(axis=-1)


def called_class(probabilities: np.ndarray, class_names, benign) -> str:
    """The class a call names, coherent with its malignant-vs-benign side.

    The side comes first: malignant when P(malignant) >= 0.5, else benign; the class is
    the most probable one *on that side*. So a call never says "Benign" with
    "malignant: true" (e.g. Benign 0.48, Early Pre-B 0.30, Pre-B 0.22 is called
    Early Pre-B, malignant). When the model names no benign class, or every class is
    malignant, it is the plain most probable class.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    names = list(class_names)
    indices = benign_indices(names, benign)
    if indices is None or len(indices) in (0, len(names)):
        return names[int(np.argmax(probabilities))]
    is_benign = np.zeros(len(names), bool)
    is_benign[indices] = True
    malignant = probabilities[~is_benign].sum() >= 0.5
    side = np.where(is_benign != malignant, probabilities, -np.inf)
    return names[int(np.argmax(side))]
