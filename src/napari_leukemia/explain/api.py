"""`explain`: an attribution map for an image, aligned on that image.

The work is: prepare the model input (plugin model: its preprocessing and cell ROI;
plain ``keras.Model``: the image as it is), run the method's compiled analyzer, sum
channels, map the result back onto the image, and say what happened in `notes`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np

from .. import memo
from ..roi import RoiTransform
from .methods import ExplainError, method_info


class EmptyMapWarning(UserWarning):
    """An attribution map came out all zero (undefined), e.g. Deep Taylor in document 003."""


@dataclass
class Explanation:
    """The result of `explain_full`.

    Attributes
    ----------
    map : float32 (rows, cols) of the image given, channels summed, finite. Outside the
        explained ROI (cell models) the map is 0.
    method, params : the method id and the parameters used (defaults filled in).
    target, target_name : the explained class; `logit` is its pre-softmax score.
    predicted, probabilities : the model's call on the explained input.
    signed : True when the map has meaningful negative values (diverging colormap).
    notes : what was done to the input and anything doubtful (resizing, empty map, ...).
    transform : `RoiTransform` from `input_map` pixels to image pixels (plugin models;
        None for a plain keras.Model, whose input is the image itself).
    input_map : the map on the model input (rows, cols of the model input).
    bbox : the explained cell's box in the image, if a cell ROI was explained.
    layer : the feature-map layer of Grad-CAM / Grad-CAM++.
    diagnostics : method-specific checks (IG completeness, LRP relevance sum, ...).
    """

    map: np.ndarray
    method: str
    target: int
    target_name: str
    logit: float
    signed: bool
    notes: list[str] = field(default_factory=list)
    transform: RoiTransform | None = None
    input_map: np.ndarray | None = None
    predicted: int | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    bbox: tuple | None = None
    layer: str | None = None
    params: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the map is all zero (nothing to show)."""
        return not np.any(self.map)

    @property
    def label(self) -> str:
        """Short description for a layer name, e.g. ``"LRP-ε · Pre-B"``."""
        return f"{method_info(self.method).label} · {self.target_name}"


def _load(model):
    from ..model.classify import LoadedModel, load_model

    if model is None or isinstance(model, (str, Path)):
        return load_model(model)
    if isinstance(model, LoadedModel):
        return model
    keras = _keras()
    if isinstance(model, keras.Model):
        return model
    raise ExplainError(
        f"model must be None (the bundled model), a path, a LoadedModel or a keras.Model; "
        f"got {type(model).__name__}."
    )


def _keras():
    from ..model.backend import keras_module

    return keras_module()


def _target_index(target, names: list[str], classes: int) -> int | None:
    if target is None:
        return None
    if isinstance(target, str):
        if target in names:
            return names.index(target)
        lowered = [n.lower() for n in names]
        if target.lower() in lowered:
            return lowered.index(target.lower())
        raise ExplainError(
            f"target {target!r} is not a class of this model; classes are: {', '.join(names)}."
        )
    if isinstance(target, bool) or not isinstance(target, Integral):
        raise ExplainError(f"target must be a class index or name, got {target!r}.")
    if not 0 <= int(target) < classes:
        raise ExplainError(
            f"target {int(target)} does not exist; the model has {classes} classes "
            f"(0–{classes - 1}: {', '.join(names)})."
        )
    return int(target)


def _prepare_plugin(image, loaded, bbox, notes, mask=None):
    """Model input, transform back to the image, and the explained cell's bbox
    (`mask`: the cell's own full-image mask, when it is a detected cell)."""
    from ..images import check_2d
    from ..model.cell_context import full_mask
    from ..model.inputs import cell_input, convert

    check_2d(image)
    spec = loaded.info.input
    rows, cols = np.shape(image)[:2]
    whole = RoiTransform(
        origin=(0.0, 0.0),
        scale=(rows / spec.size[0], cols / spec.size[1]),
        image_shape=(rows, cols),
    )
    if bbox is not None:
        x, transform = cell_input(image, bbox, spec, mask)
        if spec.kind == "field":
            notes.append(
                "This model was trained on whole fields; a single-cell ROI is outside what "
                "it has seen."
            )
        return x, transform, tuple(int(v) for v in bbox)
    if spec.kind == "cell":
        cells = memo.detections(image)
        if cells:
            cell = cells[0]
            x, transform = cell_input(image, cell.bbox, spec, full_mask(cell, (rows, cols)))
            notes.append(
                f"No bbox given: explained the most confident detected cell, bbox "
                f"{tuple(int(v) for v in cell.bbox)} (score {cell.score:.2f})."
            )
            return x, transform, tuple(int(v) for v in cell.bbox)
        notes.append(
            "No bbox given and no cell detected: the whole image was resized to the "
            f"model's {spec.size[0]}x{spec.size[1]} cell input and explained."
        )
        return convert(image, spec), whole, None
    if (rows, cols) != tuple(spec.size):
        notes.append(
            f"The image ({rows}x{cols}) was resized to the model's input "
            f"{spec.size[0]}x{spec.size[1]}; the map was resized back."
        )
    return convert(image, spec), whole, None


def _prepare_plain(image, graph, notes):
    """The image as the plain keras.Model's input (no preprocessing)."""
    array = np.asarray(image)
    shape = tuple(graph.input_shape[1:])
    if len(shape) != 3:
        raise ExplainError(
            f"The model's input shape {shape} is not an image (rows, cols, channels)."
        )
    if array.ndim == 2 and shape[-1] == 1:
        array = array[..., None]
    if array.ndim != 3:
        raise ExplainError(
            f"The image has shape {array.shape}; this model takes {shape} (rows, cols, "
            "channels). Pass one 2-D image."
        )
    mismatch = [
        i
        for i, (have, want) in enumerate(zip(array.shape, shape, strict=True))
        if want is not None and have != want
    ]
    if mismatch:
        raise ExplainError(
            f"The image has shape {array.shape} but the model takes {shape}. A plain "
            "keras.Model gets the image as it is: resize / convert it first, or pass a "
            "LoadedModel (load_model(path)) whose metadata says how to prepare images."
        )
    if np.issubdtype(array.dtype, np.integer):
        notes.append(
            f"The image ({array.dtype}) was fed unscaled, as a plain keras.Model gets it."
        )
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ExplainError("The image contains NaN or infinite values.")
    return array


def map_to_image(input_map: np.ndarray, transform: RoiTransform) -> np.ndarray:
    """Place a map computed on a model input onto the image it came from.

    The ROI window (``transform.origin``, ``transform.scale`` x map size) is resampled
    bilinearly (anti-aliased when shrinking) and pasted; pixels outside it are 0. Values
    are resampled, not rescaled: they stay relevance per model-input pixel.
    """
    from skimage.transform import resize

    rows, cols = transform.image_shape
    size_r, size_c = input_map.shape
    height = max(1, int(round(transform.scale[0] * size_r)))
    width = max(1, int(round(transform.scale[1] * size_c)))
    top, left = (int(round(v)) for v in transform.origin)
    window = input_map.astype(np.float64)
    if (height, width) != window.shape:
        window = resize(
            window,
            (height, width),
            order=1,
            preserve_range=True,
            anti_aliasing=height < size_r or width < size_c,
        )
    out = np.zeros((rows, cols), dtype=np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, rows), min(left + width, cols)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = window[r0 - top : r1 - top, c0 - left : c1 - left]
    return out


@dataclass
class _Context:
    """The model side of a call: Keras model, graph, class names, input domain."""

    loaded: object
    keras_model: object
    graph: object
    names: list[str]
    domain: tuple[float, float] | None
    plugin: bool

    @classmethod
    def of(cls, model) -> _Context:
        from ..model.classify import LoadedModel
        from .analyzers import get_graph

        loaded = _load(model)
        plugin = isinstance(loaded, LoadedModel)
        keras_model = loaded.keras_model if plugin else loaded
        graph = get_graph(keras_model)
        classes = int(graph.shapes.get(graph.output, (None, 0))[-1] or 0)
        names = list(loaded.class_names) if plugin else []
        if len(names) != classes:
            names = [f"class {i}" for i in range(classes)]
        domain = (0.0, 1.0) if plugin else None
        return cls(loaded, keras_model, graph, names, domain, plugin)

    @property
    def model_notes(self) -> list[str]:
        return list(self.loaded.notes) if self.plugin else []


@dataclass
class _Item:
    """One prepared model input and how its map goes back onto its image."""

    x: np.ndarray
    transform: RoiTransform | None
    bbox: tuple | None
    notes: list[str]


def _prepare(ctx: _Context, image, bbox, mask=None, image_key=None) -> _Item:
    """The model input of the cell in `bbox` (or the image); `image_key`: the image's
    `memo.digest` when the caller has it (one digest for all boxes of a batch)."""
    if ctx.plugin:
        image_key = memo.digest(image) if image_key is None else image_key
        key = _item_key(ctx, image_key, bbox, mask)
        item = memo.PREPARED.get(key, lambda: _prepare_item(ctx, image, bbox, mask))[0]
        return _Item(item.x, item.transform, item.bbox, list(item.notes))
    notes = ctx.model_notes
    if bbox is not None:
        raise ExplainError(
            "bbox needs a plugin model (LoadedModel) whose metadata says how to cut "
            "a cell ROI; with a plain keras.Model crop the image yourself."
        )
    return _Item(_prepare_plain(image, ctx.graph, notes), None, None, notes)


def _prepare_item(ctx: _Context, image, bbox, mask) -> _Item:
    """A plugin model's input for the cell in `bbox` (or the image), read-only."""
    notes = ctx.model_notes
    spec = ctx.loaded.info.input
    if bbox is not None and mask is None and spec.kind == "cell" and spec.context == "cell":
        mask = _detected_mask(image, bbox)
    x, transform, used = _prepare_plugin(image, ctx.loaded, bbox, notes, mask)
    x = np.asarray(x, dtype=np.float32)
    x.flags.writeable = False
    return _Item(x, transform, used, notes)


def _detected_mask(image, bbox) -> np.ndarray:
    """The full-image mask of the detected cell in `bbox`, as `cell_masks` finds it
    (the detection overlapping the box most), from the remembered detection."""
    from ..model.cell_context import best_overlap

    return best_overlap(memo.detected_masks(image), bbox, np.shape(image))


def _item_key(ctx: _Context, image_key, bbox, mask) -> tuple | None:
    """What a prepared input depends on, or None when it cannot be told (not kept)."""
    if image_key is None:
        return None
    try:
        box = None if bbox is None else tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    mask_key = None if mask is None else memo.digest(np.asarray(mask))
    spec = dataclasses.astuple(ctx.loaded.info.input)
    return ("item", image_key, box, mask_key, spec, tuple(ctx.model_notes))


def _prepare_roi(ctx: _Context, roi) -> _Item:
    """One ROI of a stack: the whole ROI is the model input (resized for plugin models)."""
    from ..images import check_2d
    from ..model.inputs import convert

    if not ctx.plugin:
        return _Item(_prepare_plain(roi, ctx.graph, []), None, None, [])
    check_2d(roi)
    spec = ctx.loaded.info.input
    rows, cols = np.shape(roi)[:2]
    whole = RoiTransform(
        origin=(0.0, 0.0),
        scale=(rows / spec.size[0], cols / spec.size[1]),
        image_shape=(rows, cols),
    )
    return _Item(convert(roi, spec), whole, None, ctx.model_notes)


def _targets(target, n: int, ctx: _Context) -> list:
    """One resolved target (index or None) per input: one for all, or one each."""
    classes = len(ctx.names)
    if isinstance(target, list | tuple | np.ndarray):
        if len(target) != n:
            raise ExplainError(
                f"{len(target)} targets were given for {n} cells; give one target for all "
                "cells or exactly one per cell."
            )
        return [_target_index(t, ctx.names, classes) for t in target]
    return [_target_index(target, ctx.names, classes)] * n


def _explanation(ctx, method, info, values, item: _Item, maps, i) -> Explanation:
    """The `Explanation` of input `i` of a `BatchMaps`."""
    notes = item.notes + maps.item_notes[i] + maps.notes
    input_map = maps.maps[i]
    bad = ~np.isfinite(input_map)
    if bad.any():
        notes.append(f"{int(bad.sum())} non-finite map values were set to 0.")
        input_map = np.where(bad, 0.0, input_map).astype(np.float32)
    transform = item.transform
    image_map = input_map if transform is None else map_to_image(input_map, transform)
    image_map = np.ascontiguousarray(image_map, dtype=np.float32)
    logits = np.asarray(maps.logits[i], dtype=np.float64)
    target = int(maps.targets[i])
    logit = float(logits[target])
    if ctx.graph.output_activation == "sigmoid":
        probs = 1.0 / (1.0 + np.exp(-logits))
    else:
        shifted = np.exp(logits - logits.max())
        probs = shifted / shifted.sum()
    if not np.any(input_map):
        notes.append(
            f"The {info.label} map is all zero (undefined): {info.empty_reason}. Try another "
            "method or target class."
        )
    elif method in ("deep_taylor", "lrp_alpha_beta") and logit < 0 and values.get("beta", 0) == 0:
        notes.append(
            f"The explained logit is negative ({logit:.3g}), so this z⁺ map is ≤ 0 "
            "everywhere (it shows evidence against the class)."
        )
    return Explanation(
        map=image_map,
        method=method,
        target=target,
        target_name=ctx.names[target],
        logit=logit,
        signed=bool(info.signed or (image_map < 0).any()),
        notes=notes,
        transform=transform,
        input_map=input_map,
        predicted=int(np.argmax(logits)),
        probabilities={n: float(p) for n, p in zip(ctx.names, probs, strict=True)},
        bbox=item.bbox,
        layer=maps.layer,
        params=values,
        diagnostics=maps.diagnostics[i],
    )


def _run(ctx, method, items: list[_Item], targets, values) -> list[Explanation]:
    from .analyzers import run_batch

    info = method_info(method)
    if not items:
        return []
    shapes = {item.x.shape for item in items}
    if len(shapes) > 1:  # plain models with flexible input sizes: one call per size
        return [
            _run(ctx, method, [it], [t], values)[0] for it, t in zip(items, targets, strict=True)
        ]
    x = np.stack([item.x for item in items]).astype(np.float32)
    maps = run_batch(ctx.keras_model, method, x, targets, values, ctx.domain)
    return [_explanation(ctx, method, info, values, item, maps, i) for i, item in enumerate(items)]


def _model_defaults(ctx: _Context, values: dict) -> dict:
    """Fill the automatic Integrated Gradients baseline from the model.

    A model that reads the cell alone sees everything outside the cell as the blank
    slide (`cell_context.BLANK`), so its "no evidence" input is a blank slide, not black:
    from that baseline the blanked surroundings get no attribution (x − x′ = 0 there)
    and the map sums to f(cell) − f(blank slide). Other models keep black (0).
    """
    if "baseline" not in values or values["baseline"] is not None:
        return values
    from ..model.cell_context import BLANK

    cell_only = ctx.plugin and ctx.loaded.info.input.context == "cell"
    return {**values, "baseline": BLANK if cell_only else 0.0}


def explain_full(image, method: str, model=None, target=None, *, bbox=None, **params):
    """Like `explain`, but return the full `Explanation` (map, target, notes, transform).

    For a batch of cells (`bbox` a list of boxes or cells) or a stack of ROIs (`image`
    a list of images or a 4-D array), a list with one `Explanation` per cell; all cells
    run through the method's compiled engine together (see `explain`).
    """
    from ..model.inputs import bbox_batch, own_masks, refuse_roi_stack, roi_stack, single_bbox

    info = method_info(method)
    ctx = _Context.of(model)
    values = _model_defaults(ctx, info.resolve(params))
    stack = roi_stack(image)
    boxes = None if bbox is None else bbox_batch(bbox)
    masks = None if bbox is None or stack is not None else own_masks(bbox, np.shape(image))
    if stack is None and boxes is None:
        mask = None if masks is None else masks[0]
        item = _prepare(ctx, image, None if bbox is None else single_bbox(bbox), mask)
        return _run(ctx, method, [item], _targets(target, 1, ctx), values)[0]
    if stack is not None:
        if bbox is not None:
            raise ExplainError(
                "Give either a stack of cell ROIs or one image with bboxes, not both."
            )
        if ctx.plugin:
            refuse_roi_stack(ctx.loaded.info.input)
        items = [_prepare_roi(ctx, roi) for roi in stack]
    else:
        masks = masks or [None] * len(boxes)
        key = memo.digest(image) if ctx.plugin else None
        items = [_prepare(ctx, image, box, m, key) for box, m in zip(boxes, masks, strict=True)]
    return _run(ctx, method, items, _targets(target, len(items), ctx), values)


def explain(image, method: str, model=None, target=None, *, bbox=None, **params):
    """Attribution map of `image` for one class: float32 (rows, cols), channels summed.

    Parameters
    ----------
    image : 2-D gray, RGB or RGBA image. With a plugin model any size and dtype (it is
        prepared as the model's metadata says); with a plain keras.Model exactly the
        model's input shape (fed as it is, no scaling). A list of images or a 4-D array
        (N, rows, cols, channels) is a stack of cell ROIs, each explained whole.
    method : one of ``METHODS`` (gradient, abs_gradient, gradient_x_input,
        integrated_gradients, smoothgrad, lrp_z, lrp_epsilon, lrp_alpha_beta,
        deep_taylor, grad_cam, grad_cam_pp, occlusion).
    model : None (the bundled model), a path to a ``.keras`` file, a `LoadedModel`, or
        a Sequential / functional ``keras.Model``.
    target : class index or class name; default the predicted class. The explained
        score is the target's pre-softmax logit. For a batch: one for all cells, or a
        list with one per cell.
    bbox : (min_row, min_col, max_row, max_col) of a cell, for cell models: the cell's
        ROI is explained and the map is placed back on the image (0 outside the ROI).
        Without it a cell model explains the most confident detected cell (or the whole
        image resized when none is found); a field model explains the resized image.
        A list of boxes, an (N, 4) array or the cells of `detect_cells` explain all
        those cells in one compiled call (cut into chunks, with a note, only when the
        batch would not fit the ~256 MB activation budget).
    **params : the method's parameters (see ``METHODS[method].params``).

    Returns
    -------
    map : float32 array of shape ``image.shape[:2]``, finite, summed over channels
        (|Gradient| sums absolute values). An all-zero map raises `EmptyMapWarning`.
        For a batch of cells, maps (N, rows, cols) on the image; for a stack of ROIs,
        maps (N, rows, cols) on the ROIs (a list when the ROIs differ in size); an empty
        batch gives an empty result. Use `explain_full` for the target, logit, notes
        and ROI transform.
    """
    result = explain_full(image, method, model, target, bbox=bbox, **params)
    if isinstance(result, Explanation):
        if result.empty:
            warnings.warn(result.notes[-1], EmptyMapWarning, stacklevel=2)
        return result.map
    empty = [i for i, r in enumerate(result) if r.empty]
    if empty:
        warnings.warn(
            f"{len(empty)} of {len(result)} maps are all zero (cells {empty[:10]}): "
            f"{result[empty[0]].notes[-1]}",
            EmptyMapWarning,
            stacklevel=2,
        )
    maps = [r.map for r in result]
    if not maps:
        shape = np.shape(image)[1:3] if _empty_stack(image, bbox) else np.shape(image)[:2]
        return np.zeros((0, *shape), dtype=np.float32)
    if len({m.shape for m in maps}) > 1:
        return maps
    return np.stack(maps)


def _empty_stack(image, bbox) -> bool:
    """True when an empty result is an empty stack of ROIs (4-D array) rather than cells."""
    return bbox is None and isinstance(image, np.ndarray) and image.ndim == 4
