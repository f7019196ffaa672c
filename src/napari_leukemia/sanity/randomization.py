"""`randomization_check`: does an attribution map depend on what the model learned?

The model-parameter randomisation test of Adebayo et al. (2018, "Sanity checks for
saliency maps"; Quantus calls it MPRT): re-initialise the model's layers cumulatively
from the output down, recompute the map after each step and compare it with the map of
the trained model (Spearman rank correlation and SSIM). A map that barely changes when
the weights are random shows the input, not the model.

Work is done on a clone of the model: the user's model object and file are never
changed. Layers with weights are grouped into blocks (a layer with a kernel starts a
block, the BatchNorm after it joins it), at most `max_blocks` of them, so the bundled
model takes six steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

__all__ = ["RandomizationCheck", "RandomizationError", "randomization_check"]

#: |map| rank correlation with every layer random above which the map "barely changes".
MAX_FINAL_CORRELATION = 0.5


class RandomizationError(ValueError):
    """A model the check cannot re-initialise; the message says why and what to do."""


@dataclass
class RandomizationCheck:
    """Result of `randomization_check`.

    table : one row per step: ``step`` (0 = trained model), ``block`` (the layers
        re-initialised at this step; earlier blocks stay random), ``spearman`` (signed map),
        ``spearman_abs`` (|map|) and ``ssim`` to the trained model's map.
    maps : the map on the model input after each step (step 0 first).
    verdict : one line saying whether the map depends on the model's parameters.
    """

    table: pd.DataFrame
    maps: list[np.ndarray]
    verdict: str
    method: str
    target_name: str
    notes: list[str] = field(default_factory=list)


def randomization_check(
    image,
    method: str,
    model=None,
    bbox=None,
    *,
    target=None,
    max_blocks: int = 8,
    seed: int = 0,
    **params,
) -> RandomizationCheck:
    """Re-initialise `model` block by block from the top and compare `method`'s maps.

    Parameters
    ----------
    image, method, bbox, target, params : as for `napari_leukemia.explain` (the target
        is fixed to the trained model's explained class for every step).
    model : None (bundled), a path, a `LoadedModel` or a Sequential / functional
        ``keras.Model``. Only a clone is changed.
    max_blocks : layers with weights are merged into at most this many blocks.
    seed : seeds the new weights (each layer's own Keras initialisers), so runs repeat.
    """
    from ..explain import clear_cache, explain_full

    loaded = _load(model)
    keras_model = getattr(loaded, "keras_model", loaded)
    blocks = weight_blocks(keras_model, int(max_blocks))
    work, fresh = _clone_with_fresh_weights(keras_model, int(seed))
    subject = _like(loaded, work)
    reference = explain_full(image, method, subject, target, bbox=bbox, **params)
    maps, rows, notes = [_input_map(reference)], [], list(reference.notes)
    rows.append(_row(0, [], maps[0], maps[0]))
    for step, block in enumerate(reversed(blocks), start=1):
        for name in block:
            work.get_layer(name).set_weights(fresh[name])
        clear_cache(work)  # compiled analyzers may hold folded copies of the old weights
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty maps of random models are expected
            result = explain_full(image, method, subject, reference.target, bbox=bbox, **params)
        maps.append(_input_map(result))
        rows.append(_row(step, block, maps[0], maps[-1]))
    table = pd.DataFrame(rows)
    return RandomizationCheck(
        table, maps, _verdict(table), method, reference.target_name, _notes(table, notes)
    )


def weight_blocks(keras_model, max_blocks: int = 8) -> list[list[str]]:
    """Names of the layers with weights, grouped input-first into at most `max_blocks`."""
    if max_blocks < 1:
        raise RandomizationError(f"max_blocks must be 1 or more, got {max_blocks}.")
    blocks: list[list[str]] = []
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        if hasattr(layer, "kernel") or not blocks:
            blocks.append([layer.name])
        else:
            blocks[-1].append(layer.name)
    if not blocks:
        raise RandomizationError(
            f"The model {keras_model.name!r} has no layers with weights: there is nothing "
            "to re-initialise."
        )
    if len(blocks) > max_blocks:
        groups = np.array_split(np.arange(len(blocks)), max_blocks)
        blocks = [sum((blocks[i] for i in g), []) for g in groups]
    return blocks


def _load(model):
    from ..model.backend import keras_module
    from ..model.classify import LoadedModel, load_model

    if model is None or isinstance(model, (str, Path)):
        return load_model(model)
    if isinstance(model, (LoadedModel, keras_module().Model)):
        return model
    raise RandomizationError(
        f"model must be None (the bundled model), a path, a LoadedModel or a keras.Model; "
        f"got {type(model).__name__}."
    )


def _like(loaded, keras_model):
    """`keras_model` wrapped like `loaded` (a `LoadedModel` keeps its metadata)."""
    from ..model.classify import LoadedModel

    if isinstance(loaded, LoadedModel):
        return LoadedModel(keras_model, loaded.info, None, list(loaded.notes))
    return keras_model


def _seeded(config: dict, seed: int) -> dict:
    """A layer config whose random initialisers draw from `seed` (others unchanged)."""
    out = dict(config)
    for key, value in config.items():
        inner = value.get("config") if isinstance(value, dict) else None
        if key.endswith("_initializer") and isinstance(inner, dict) and "seed" in inner:
            out[key] = {**value, "config": {**inner, "seed": seed}}
    return out


def _clone_with_fresh_weights(keras_model, seed: int):
    """(clone holding the trained weights, {layer name: freshly initialised weights})."""
    from ..model.backend import keras_module

    keras = keras_module()
    counter = iter(range(seed * 1000, seed * 1000 + 100000))

    def rebuild(layer):
        return layer.__class__.from_config(_seeded(layer.get_config(), next(counter)))

    try:
        clone = keras.models.clone_model(keras_model, clone_function=rebuild)
    except Exception as error:  # noqa: BLE001 - any failure becomes one clear message
        raise RandomizationError(
            f"The layers of {keras_model.name!r} cannot be re-initialised: cloning the model "
            f"failed ({type(error).__name__}: {error}). The check needs a Sequential or "
            "functional model whose layers rebuild from get_config(); give custom layers a "
            "complete get_config()."
        ) from error
    fresh = {layer.name: layer.get_weights() for layer in clone.layers if layer.weights}
    try:
        clone.set_weights(keras_model.get_weights())
    except ValueError as error:
        raise RandomizationError(
            f"The clone of {keras_model.name!r} does not take the model's own weights "
            f"({error}); its layers cannot be re-initialised one by one."
        ) from error
    return clone, fresh


def _input_map(result) -> np.ndarray:
    values = result.input_map if result.input_map is not None else result.map
    return np.asarray(values, dtype=np.float64)


def _row(step: int, block: list[str], reference: np.ndarray, current: np.ndarray) -> dict:
    return {
        "step": step,
        "block": ", ".join(block) if block else "none (trained model)",
        "spearman": _spearman(reference, current),
        "spearman_abs": _spearman(np.abs(reference), np.abs(current)),
        "ssim": _ssim(reference, current),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho over pixels; NaN when either map is constant (rank order undefined)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the two maps, each scaled by its own max |value| (range [-1, 1])."""
    side = min(a.shape[:2])
    window = min(7, side if side % 2 else side - 1)
    peak_a, peak_b = np.max(np.abs(a)), np.max(np.abs(b))
    if window < 3 or peak_a == 0 or peak_b == 0:
        return float("nan")
    channel = {"channel_axis": -1} if a.ndim == 3 else {}
    return float(
        structural_similarity(a / peak_a, b / peak_b, data_range=2.0, win_size=window, **channel)
    )


def _verdict(table: pd.DataFrame) -> str:
    final = float(table["spearman_abs"].iloc[-1])
    if np.isnan(final):
        return "Undefined: the map of the fully randomised model is constant (all zero)."
    if final >= MAX_FINAL_CORRELATION:
        return (
            f"The map barely depends on the model's parameters: with every layer random its "
            f"|map| still ranks pixels alike (Spearman {final:.2f}); it does not explain "
            "this model."
        )
    return (
        f"The map depends on the model's parameters: with every layer random the |map| "
        f"rank correlation fell to {final:.2f} (from 1)."
    )


def _notes(table: pd.DataFrame, notes: list[str]) -> list[str]:
    undefined = table.loc[table["spearman"].isna(), "step"].tolist()
    if undefined:
        notes = [*notes, f"The map was constant (all zero) after step(s) {undefined}."]
    return notes
