"""Load a model safely and classify a field or a single cell.

`load_model()` with no path returns the model bundled with the package. Models are
loaded with Keras ``safe_mode=True`` so a file cannot run code (Lambda layers with
pickled functions are refused).
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..images import MAX_PIXELS, as_array, check_2d, check_image_size, read_image
from ..roi import clip_bbox
from .backend import keras_module
from .inputs import (
    bbox_batch,
    cell_inputs,
    convert,
    field_inputs,
    own_masks,
    refuse_roi_stack,
    roi_stack,
    single_bbox,
)
from .metadata import (
    CLASS_NAMES,
    InputSpec,
    ModelInfo,
    called_class,
    malignant_probability,
    read_info,
)

BUNDLED_MODEL = "leukemia_default.keras"


class ModelError(ValueError):
    """A model file that cannot be used; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A Keras model with the metadata that says how to feed it."""

    keras_model: object
    info: ModelInfo
    path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a prepared input batch (N, rows, cols, channels).

        One compiled forward pass (built on first use, shared with `explain`); a batch
        too large for the memory budget runs in chunks.
        """
        from ..explain.analyzers import predict

        return predict(self.keras_model, batch)

    @cached_property
    def ood(self):
        """The fitted OOD score (`model.ood.OodModel`), or None when the model has none."""
        from .ood import OodModel

        return OodModel.from_dict(self.info.ood) if self.info.ood else None

    @property
    def temperature(self) -> float:
        return float(self.info.calibration.get("temperature", 1.0))

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The probabilities a call reports and each input's OOD score (None if no fit).

        A model whose metadata has a temperature reports softmax(logits / T)
        (`model.calibration`); features and logits come from one compiled pass.
        """
        if self.ood is None and not self.info.calibration:
            return self.predict(batch), None
        from .calibration import softmax
        from .ood import features_and_logits

        layers = self.ood.layers if self.ood is not None else ()
        features, logits = features_and_logits(self.keras_model, batch, layers)
        probabilities = softmax(logits, self.temperature).astype(np.float32)
        return probabilities, None if self.ood is None else self.ood.scores(features)


@dataclass
class Classification:
    """The result of `classify`: the call, all class probabilities, and how it was made.

    `class_name` is coherent with `malignant`: the most probable class on the side
    (malignant when P(malignant) >= 0.5, else benign) that the call takes
    (`metadata.called_class`), so "Benign" never comes with "malignant: true".
    """

    class_name: str
    probabilities: dict[str, float]
    malignant_probability: float
    kind: str  # "cell" (one ROI), "field (mean of N cells)" or "field (whole image)"
    cell_probabilities: np.ndarray | None = None
    cell_bboxes: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ood_score: float | None = None
    ood_threshold: float | None = None
    cell_ood_scores: np.ndarray | None = None
    cell_found: bool | None = None  # a detected white cell in the box (None: not checked)

    @property
    def unfamiliar(self) -> bool | None:
        """The input is unlike the training cells: no white cell was detected in it, or
        its OOD score is above the model's threshold (for a field, any of its cells's);
        None when neither could be checked."""
        if self.cell_found is False:
            return True
        if self.ood_score is None or self.ood_threshold is None:
            return None
        return bool(self.ood_score > self.ood_threshold)

    @property
    def malignant(self) -> bool | None:
        """P(malignant) >= 0.5; None when P(malignant) is unknown (NaN, see `notes`)."""
        if np.isnan(self.malignant_probability):
            return None
        return bool(self.malignant_probability >= 0.5)

    def as_dict(self) -> dict:
        """Plain-JSON form (for ``predict --json`` and layer metadata)."""
        out = {
            "class": self.class_name,
            "probabilities": self.probabilities,
            "malignant_probability": self.malignant_probability,
            "malignant": self.malignant,
            "kind": self.kind,
            "n_cells": len(self.cell_bboxes),
            "ood_score": self.ood_score,
            "ood_threshold": self.ood_threshold,
            "unfamiliar": self.unfamiliar,
            "cell_found": self.cell_found,
            "notes": list(self.notes),
        }
        if self.cell_bboxes:
            scores = self.cell_ood_scores
            out["cells"] = [
                {
                    "bbox": [int(v) for v in b],
                    "probabilities": [float(p) for p in probs],
                    "ood_score": None if scores is None else float(scores[i]),
                }
                for i, (b, probs) in enumerate(
                    zip(self.cell_bboxes, self.cell_probabilities, strict=True)
                )
            ]
        return out


def bundled_model_path() -> Path:
    return Path(str(files("napari_leukemia") / "model" / "bundled" / BUNDLED_MODEL))


def load_model(path: Path | str | None = None) -> LoadedModel:
    """Load a ``.keras`` model (default: the bundled one) with its metadata.

    Raises `ModelError` for a missing file, a file that is not a Keras model, or one
    that needs unsafe deserialisation (code execution).
    """
    target = bundled_model_path() if path is None else Path(path)
    # cached per file version: a changed model or metadata file is loaded again
    stamps = tuple(
        p.stat().st_mtime_ns if p.exists() else 0 for p in (target, target.with_suffix(".json"))
    )
    with _LOAD_LOCK:  # threads asking at once share one load (Keras loading is not thread-safe)
        return _load_cached(str(target.resolve()), stamps)


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _load_cached(path_str: str, _stamps: tuple) -> LoadedModel:
    path = Path(path_str)
    if not path.is_file():
        raise ModelError(f"No model file at {path}.")
    if path.suffix == ".h5" or path.suffix == ".hdf5":
        raise ModelError(
            f"{path.name} is a legacy HDF5 model. Load it in Keras and save it as .keras "
            "(model.save('model.keras')) to use it here."
        )
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ModelError(f"{path.name} is not a Keras 3 model file (.keras archive).")
    keras = keras_module()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as error:
        if "safe_mode" in str(error) or "unsafe" in str(error).lower():
            raise ModelError(
                f"{path.name} contains code (e.g. a Lambda layer) that would run when "
                "loaded; it was refused for safety. Rebuild the model without Lambda "
                "layers, or load it yourself with safe_mode=False only if you trust it."
            ) from error
        raise ModelError(f"{path.name} could not be loaded as a Keras model: {error}") from error
    except Exception as error:  # noqa: BLE001 - any failure becomes one clear message
        raise ModelError(f"{path.name} could not be loaded as a Keras model: {error}") from error
    info = read_info(path)
    notes = []
    if info is None:
        info, notes = _guess_info(model)
    _check_compatible(model, info, path)
    return LoadedModel(model, info, path, notes)


def _guess_info(model) -> tuple[ModelInfo, list[str]]:
    """Metadata for a model that has none: a field model fed as its input shape says."""
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[3] not in (1, 3):
        raise ModelError(
            f"The model's input shape {shape} is not an image batch (N, rows, cols, 1|3); "
            "this plugin classifies 2-D gray or RGB images."
        )
    n_out = model.output_shape[-1]
    names = list(CLASS_NAMES) if n_out == 4 else [f"class {i}" for i in range(n_out)]
    pipeline = "rgb" if shape[3] == 3 else "document000"
    spec = InputSpec(kind="field", size=(shape[1], shape[2]), pipeline=pipeline)
    note = (
        f"No metadata file beside the model: assuming whole-field input {shape[1]}x{shape[2]}"
        f" ({'RGB in [0, 1]' if pipeline == 'rgb' else 'gray, document 000 pipeline'}) and "
        f"classes {names}."
    )
    return ModelInfo(class_names=names, input=spec, architecture="unknown"), [note]


def _check_compatible(model, info: ModelInfo, path: Path) -> None:
    shape = tuple(model.input_shape[1:])
    if shape != tuple(info.input.shape):
        raise ModelError(
            f"{path.name} takes inputs of shape {shape} but its metadata says "
            f"{tuple(info.input.shape)}; fix or remove {path.with_suffix('.json').name}."
        )
    if model.output_shape[-1] != len(info.class_names):
        raise ModelError(
            f"{path.name} has {model.output_shape[-1]} outputs but its metadata names "
            f"{len(info.class_names)} classes."
        )


def classify(
    image: np.ndarray,
    model: LoadedModel | str | Path | None = None,
    bbox=None,
    *,
    max_pixels: int | None = MAX_PIXELS,
):
    """Classify a smear image, or the cell in `bbox` of it.

    Parameters
    ----------
    image : 2-D gray, RGB or RGBA image of any dtype, or the path of an image file.
        A list or tuple of images, or a 4-D array (N, rows, cols, channels), is a stack
        of cell ROIs: each is prepared as a whole ROI and all run in one compiled call.
    model : a `LoadedModel`, a path to a ``.keras`` file, or None for the bundled model.
    bbox : (min_row, min_col, max_row, max_col) of one cell, or a batch of cells (a list
        of boxes, an (N, 4) array, or the cells of `detect_cells`). With a bbox the
        cell's ROI is classified (a bbox past the image is clipped, with a note); without
        one, a cell model classifies every detected cell and averages their probabilities
        (the field's call), and a field model classifies the whole image.
    max_pixels : int or None
        Without a bbox, an image larger than this many pixels (default
        :data:`~napari_leukemia.images.MAX_PIXELS`, 25 megapixels) is refused with a
        message pointing to the per-cell batch path; None classifies any size.

    Returns
    -------
    Classification with the class, all class probabilities and P(malignant), the sum
    over the classes the metadata does not call benign; NaN, with a note, when the
    metadata names no benign class of this model. For a batch of cells or a stack of
    ROIs, a list with one Classification per cell (empty for an empty batch); the batch
    runs as one compiled forward pass, in chunks only past the memory budget.
    """
    _check_whole_image_size(image, bbox, max_pixels)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    stack = roi_stack(image)
    if stack is not None:
        if bbox is not None:
            raise ValueError(
                "Give either a stack of cell ROIs or one image with bboxes, not both."
            )
        return _classify_stack(stack, loaded)
    image = _as_image(image)
    boxes = None if bbox is None else bbox_batch(bbox)
    masks = None if bbox is None else own_masks(bbox, image.shape)
    if boxes is not None:
        return _classify_cells(image, boxes, loaded, masks)
    spec, notes = loaded.info.input, list(loaded.notes)
    if bbox is not None:
        bbox = single_bbox(bbox)
        bbox, clip_note = clip_bbox(bbox, image.shape)
        notes += [clip_note] if clip_note else []
        masks, found = _masks_and_found(image, [bbox], spec, masks)
        batch, kind, cells = cell_inputs(image, [bbox], spec, masks)[0], "cell", []
        found = found[0]
        notes += [] if found else [NO_CELL_NOTE]
        if spec.kind == "field":
            notes.append(
                "This model was trained on whole fields; a single-cell ROI is "
                "outside what it has seen."
            )
    else:
        batch, cells = field_inputs(image, spec)
        found = bool(cells) if spec.kind == "cell" else None
        if spec.kind == "cell" and not cells:
            notes.append("No cell was detected; the whole image was classified as one ROI.")
        kind = f"field (mean of {len(cells)} cells)" if cells else "field (whole image)"
    if image.shape[:2] != tuple(spec.size) and bbox is None and spec.kind == "field":
        notes.append(
            f"The image ({image.shape[0]}x{image.shape[1]}) was resized to the model's "
            f"input {spec.size[0]}x{spec.size[1]}."
        )
    probabilities, scores = loaded.outputs(batch)
    mean = probabilities.mean(axis=0)
    return Classification(
        class_name=called_class(mean, loaded.class_names, loaded.info.benign_classes),
        probabilities={n: float(p) for n, p in zip(loaded.class_names, mean, strict=True)},
        malignant_probability=_malignant(mean, loaded.info, notes),
        kind=kind,
        cell_probabilities=probabilities if cells else None,
        cell_bboxes=[c.bbox for c in cells],
        notes=notes + _unfamiliar_notes(loaded, scores),
        cell_found=found,
        **_ood_fields(loaded, scores, bool(cells)),
    )


def _check_whole_image_size(image, bbox, max_pixels) -> None:
    """Refuse a whole image past `max_pixels` (issue 14 #20); cell boxes cost per cell."""
    if bbox is None:
        check_image_size(image, max_pixels, "classify")


def _cell_results(
    loaded: LoadedModel, batch: np.ndarray, notes: list[list[str]], found=None
) -> list:
    """One Classification of kind "cell" per prepared input, from one batched pass
    (`found`: whether each input's box holds a detected white cell, when checked)."""
    probabilities, scores = loaded.outputs(batch) if len(batch) else ([], None)
    found = [None] * len(batch) if found is None else found
    return [
        Classification(
            class_name=called_class(p, loaded.class_names, loaded.info.benign_classes),
            probabilities={n: float(v) for n, v in zip(loaded.class_names, p, strict=True)},
            malignant_probability=_malignant(p, loaded.info, cell_notes),
            kind="cell",
            notes=cell_notes
            + _unfamiliar_notes(loaded, None if scores is None else scores[i : i + 1]),
            cell_found=found[i],
            **_ood_fields(loaded, None if scores is None else scores[i : i + 1], False),
        )
        for i, (p, cell_notes) in enumerate(zip(probabilities, notes, strict=True))
    ]


def _masks_and_found(image, boxes, spec, masks) -> tuple[list | None, list[bool]]:
    """The masks to prepare the boxes with and whether each holds a detected cell.

    Boxes without their own masks look the field's detections up once: a cell-only
    model takes each box's best-overlapping detected mask from them (as
    `cell_context.cell_masks` would), and the same detections say which boxes hold one.
    """
    if masks is not None:
        return masks, cells_found(image, boxes, masks)
    from ..memo import detected_masks
    from .cell_context import best_overlap

    detected = detected_masks(image)
    if spec.context == "cell":
        masks = [best_overlap(detected, box, np.shape(image)) for box in boxes]
    return masks, cells_found(image, boxes, detected=detected)


#: What a call on a box says when no detected white cell lies in it.
NO_CELL_NOTE = (
    "No white cell was detected in this box: the call is about red cells or bare slide, "
    "not a cell, so treat it as meaningless. Box a white cell, or pick one of the cells "
    "that Detect cells finds."
)
#: A box holds a cell when a detected cell's mask covers at least this share of the box,
#: or this share of the mask lies in the box (a box drawn inside a large cell, or
#: around a small one); a neighbour's rim reaching into the box does not count.
CELL_IN_BOX_SHARE = 0.25


def cells_found(image: np.ndarray, boxes, masks=None, detected=None) -> list[bool]:
    """Whether a detected white cell lies in each box (`CELL_IN_BOX_SHARE`).

    `masks` are the cells' own masks (cells of `detect_cells`): found when not empty.
    Otherwise the field's detections are used (`detected`, their full-image masks, or
    those remembered per image by `memo`).
    """
    from .cell_context import pixels_in_box

    if masks is not None:
        return [bool(np.any(m)) for m in masks]
    if detected is None:
        from ..memo import detected_masks

        detected = detected_masks(image)
    areas = [max(int(np.count_nonzero(m)), 1) for m in detected]
    out = []
    for box in boxes:
        r0, c0, r1, c1 = (max(int(v), 0) for v in box)
        box_area = max((r1 - r0) * (c1 - c0), 1)
        out.append(any(
            inside >= CELL_IN_BOX_SHARE * box_area or inside >= CELL_IN_BOX_SHARE * area
            for inside, area in zip(pixels_in_box(detected, box), areas, strict=True)
        ))  # fmt: skip
    return out


#: What a call says when its input is unlike the training cells.
UNFAMILIAR_NOTE = (
    "This cell is unlike the cells the model was trained on (OOD score {score:.0f} above "
    "the threshold {threshold:.0f}, which 1 in 100 training-like cells pass): treat the "
    "call as unreliable, whatever its probability."
)


def _ood_fields(loaded: LoadedModel, scores, field_of_cells: bool) -> dict:
    """The OOD fields of a Classification: for a field of cells, its most unusual cell."""
    if scores is None or len(scores) == 0:
        return {}
    return {
        "ood_score": float(np.max(scores)),
        "ood_threshold": float(loaded.ood.threshold),
        "cell_ood_scores": np.asarray(scores, float) if field_of_cells else None,
    }


def _unfamiliar_notes(loaded: LoadedModel, scores) -> list[str]:
    if scores is None or len(scores) == 0:
        return []
    threshold = loaded.ood.threshold
    flagged = int(np.sum(np.asarray(scores) > threshold))
    if not flagged:
        return []
    if len(scores) == 1:
        return [UNFAMILIAR_NOTE.format(score=float(scores[0]), threshold=threshold)]
    return [
        f"{flagged} of the {len(scores)} cells are unlike the cells the model was trained "
        f"on (OOD score above {threshold:.0f}): treat their share of the call as unreliable."
    ]


def _field_model_note(spec) -> list[str]:
    if spec.kind != "field":
        return []
    return [
        "This model was trained on whole fields; a single-cell ROI is outside what it has seen."
    ]


def _classify_cells(image: np.ndarray, boxes: list, loaded: LoadedModel, masks=None) -> list:
    """Each cell of `boxes` in `image` (`masks`: their own, for detected cells), all ROIs
    in one batch."""
    spec = loaded.info.input
    clipped, notes = [], []
    for box in boxes:
        box, clip_note = clip_bbox(box, image.shape)
        clipped.append(box)
        notes.append(
            list(loaded.notes) + ([clip_note] if clip_note else []) + _field_model_note(spec)
        )
    if not clipped:
        return []
    masks, found = _masks_and_found(image, clipped, spec, masks)
    for cell_notes, ok in zip(notes, found, strict=True):
        cell_notes += [] if ok else [NO_CELL_NOTE]
    return _cell_results(loaded, cell_inputs(image, clipped, spec, masks)[0], notes, found)


def _classify_stack(stack: list, loaded: LoadedModel) -> list:
    """Each ROI of a stack (any sizes: each is prepared on its own), in one batch."""
    spec = loaded.info.input
    refuse_roi_stack(spec)
    if not stack:
        return []
    batch = np.stack([convert(_as_image(roi), spec) for roi in stack]).astype(np.float32)
    notes = [list(loaded.notes) + _field_model_note(spec) for _ in stack]
    return _cell_results(loaded, batch, notes)


def _as_image(image) -> np.ndarray:
    """`image` as a checked 2-D array; a path is read (`read_image`)."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    array = as_array(image)
    check_2d(array)
    return array


def _malignant(mean: np.ndarray, info: ModelInfo, notes: list[str]) -> float:
    """P(malignant) of one probability vector; NaN plus a note when benign is unknown."""
    if info.benign_indices is None:
        notes.append(
            f"P(malignant) is unknown: none of the model's classes {info.class_names} is "
            f"named benign ({info.benign_classes}). List the benign classes under "
            "'benign_classes' in the model's metadata file (model.json)."
        )
        return float("nan")
    return float(malignant_probability(mean, info.class_names, info.benign_classes))
