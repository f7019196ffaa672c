"""Train a classifier on a class-per-folder dataset and save it with its metadata.

Pipeline: scan (skipping unreadable files) → duplicate-aware stratified split →
inputs prepared as the architecture's `InputSpec` says (cell ROIs or whole fields) →
augmentation (flips, 90° rotations, zoom, shear, Gaussian noise, brightness /
contrast / hue / saturation jitter) → class-weighted training with early stopping on
validation loss → the best weights are kept, also when the run is interrupted with
Ctrl+C or reaches its time budget → image-level metrics on validation and test →
model and metadata written to temporary files and renamed into place together.

Nothing is saved (and no old file is touched) unless at least one epoch finished.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import safe_files
from . import architectures, dataset, evaluation
from .backend import keras_module
from .cell_context import GROW_PX
from .inputs import field_inputs
from .metadata import ModelInfo, file_sha256, metadata_path


@dataclass
class Arrays:
    """Model inputs of a set of images; `field` maps each input to its image."""

    x: np.ndarray
    y: np.ndarray
    field: np.ndarray


@dataclass
class Recipe:
    """How a model is trained beyond its architecture (recorded in its metadata).

    stain_jitter: strength of the random stain (HED) jitter, 0 = off (`augment`).
    focus_penalty: weight of the penalty on input gradients outside the cell, 0 = off;
    cell-only models only (`focus_penalty`). init: a saved model of the same
    architecture and split to start from (fine-tuning) instead of random weights.
    mask_jitter: cell-only models only; training cells keep their mask grown by this
    many more image pixels, and each augmented input loses a random 0 to `mask_jitter`
    pixel rim of it again (`augment.jitter_mask`), so that the model does not depend
    on where exactly the detector draws a cell's edge, which moves with the field
    around the cell. 0 = off.
    """

    stain_jitter: float = 0.0
    focus_penalty: float = 0.0
    init: str | None = None
    mask_jitter: int = 0


def load_arrays(data: dataset.Dataset, indices: np.ndarray, spec, grow_px=GROW_PX) -> Arrays:
    """Prepare the model inputs of the images at `indices` (all cells of each field;
    `grow_px`: see `inputs.cell_inputs`)."""
    from ..images import read_image

    xs, ys, fields = [], [], []
    for index in indices:
        batch, _ = field_inputs(read_image(data.paths[index]), spec, grow_px)
        xs.append(batch)
        ys.extend([data.labels[index]] * len(batch))
        fields.extend([index] * len(batch))
    return Arrays(np.concatenate(xs).astype(np.float32), np.asarray(ys), np.asarray(fields))


def _tf_dataset(arrays: Arrays, batch_size: int, recipe: Recipe | None = None, seed: int = 0):
    """Batches of (images, labels); augmented when a `recipe` is given. With a focus
    penalty the inputs are (images, outside-the-cell mask) pairs."""
    import tensorflow as tf

    from . import augment

    data = tf.data.Dataset.from_tensor_slices((arrays.x, arrays.y))
    if recipe is not None:
        data = data.shuffle(len(arrays.y), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    focus = recipe is not None and recipe.focus_penalty > 0
    if recipe is not None:
        geometry = augment.geometric(seed)
        colour = augment.photometric(arrays.x.shape[-1], seed)

        def apply(images, labels):
            k = tf.random.uniform([], 0, 4, dtype=tf.int32, seed=seed)
            images = geometry(tf.image.rot90(images, k), training=True)
            if recipe.mask_jitter > 0:
                images = augment.jitter_mask(images, recipe.mask_jitter, seed)
            outside = augment.outside_cell(images)
            if recipe.stain_jitter > 0 and images.shape[-1] == 3:
                images = augment.stain_jitter(images, recipe.stain_jitter, seed)
            images = tf.clip_by_value(colour(images, training=True), 0.0, 1.0)
            return ((images, outside), labels) if focus else (images, labels)

        data = data.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def _callbacks(patience: int, max_minutes: float | None):
    keras = keras_module()

    class KeepBest(keras.callbacks.Callback):
        """Remember the weights with the lowest validation loss; stop at the time limit."""

        def __init__(self):
            super().__init__()
            self.best_loss, self.best_weights, self.best_epoch = np.inf, None, -1
            self.start = time.monotonic()
            self.timed_out = False

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss", np.inf)
            if loss < self.best_loss:
                self.best_loss, self.best_epoch = loss, epoch
                self.best_weights = self.model.get_weights()
            minutes = (time.monotonic() - self.start) / 60
            if max_minutes is not None and minutes > max_minutes:
                print(f"Time budget of {max_minutes} min reached; stopping.", flush=True)
                self.timed_out = True
                self.model.stop_training = True

    keep = KeepBest()
    return keep, [
        keep,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(2, patience // 3), min_lr=1e-5
        ),
    ]


def field_probabilities(model, arrays: Arrays, images: np.ndarray) -> np.ndarray:
    """Mean class probabilities of each image's inputs (its cells), for `images` in order."""
    probabilities = model.predict(arrays.x, batch_size=256, verbose=0)
    return np.stack([probabilities[arrays.field == i].mean(axis=0) for i in images])


class NothingSaved(RuntimeError):
    """Training ended without a trained model; no file on disk was written or changed."""

    def __init__(self, message: str, interrupted: bool):
        super().__init__(message)
        self.interrupted = interrupted


def check_request(out: Path, epochs, batch_size, overwrite: bool) -> None:
    """Refuse, before any work, arguments that cannot give a model or would clobber files."""
    for name, value in (("epochs", epochs), ("batch size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"The {name} must be a whole number of at least 1, got {value!r}.")
    if out.suffix != ".keras":
        raise ValueError(f"The model file must end in .keras, got {out.name}.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite.")
    meta = metadata_path(out)
    if meta.exists() and not overwrite:
        raise FileExistsError(
            f"{meta} exists and training writes the model's metadata there; move it, choose "
            "another --out, or pass --overwrite to replace it."
        )


def scan_classes(data_dir: Path | str) -> dataset.Dataset:
    """Scan the dataset, report what was found, and refuse fewer than two classes."""
    data = dataset.scan(data_dir)
    print(f"Found {len(data)} images: {data.counts()}; skipped {len(data.skipped)}.", flush=True)
    for path, reason in data.skipped[:20]:
        print(f"  skipped {path}: {reason}", flush=True)
    present = [name for name, n in data.counts().items() if n > 0]
    if len(present) < 2:
        raise ValueError(
            f"{data_dir} has images of {len(present)} class ({', '.join(present) or 'none'}); "
            "a classifier needs at least 2 class folders with images, e.g. Benign/ and Pro/."
        )
    return data


def _subsample(parts: dict, max_images: int | None, seed: int) -> dict:
    """A few images per split for quick runs (tests, smoke runs); all when not asked."""
    if not max_images:
        return parts
    rng = np.random.default_rng(seed)
    return {
        k: np.sort(rng.permutation(v)[: max(4, max_images // 5 if k != "train" else max_images)])
        for k, v in parts.items()
    }


def _load_inputs(data, parts: dict, spec, mask_jitter: int = 0) -> dict:
    """The model inputs of each split, with a one-line report of their sizes (training
    cells with their masks grown `mask_jitter` pixels more, see `Recipe`)."""
    arrays = {
        k: load_arrays(data, v, spec, GROW_PX + (mask_jitter if k == "train" else 0))
        for k, v in parts.items()
    }
    sizes = [f"{k} {len(v.y)} from {len(parts[k])} images" for k, v in arrays.items()]
    print("Inputs: " + ", ".join(sizes), flush=True)
    return arrays


def _compiled_model(arch: str, n_classes: int, spec, recipe: Recipe):
    """The model to train (fresh, or `recipe.init`'s weights) and what `fit` runs: the
    model itself, or its focus-penalty trainer."""
    keras = keras_module()
    model = architectures.build(arch, n_classes=n_classes, input_shape=spec.shape)
    if recipe.init:
        model.set_weights(keras.models.load_model(recipe.init, compile=False).get_weights())
    fitted = model
    if recipe.focus_penalty > 0:
        from .focus_penalty import focus_trainer

        fitted = focus_trainer(model, recipe.focus_penalty)
    rate = architectures.learning_rate(arch) * (0.3 if recipe.init else 1.0)
    fitted.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model, fitted


def check_recipe(recipe: Recipe, arch: str, spec, split: dict) -> None:
    """Refuse a recipe that cannot apply: a focus penalty needs a cell-only input, and a
    start model must be of the same architecture and trained on the same split (else
    this run's test images may have been its training images)."""
    for name in ("stain_jitter", "focus_penalty", "mask_jitter"):
        value = getattr(recipe, name)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"The {name.replace('_', ' ')} must be 0 or more, got {value!r}.")
    if recipe.mask_jitter != int(recipe.mask_jitter):
        raise ValueError(f"The mask jitter is a number of pixels, got {recipe.mask_jitter!r}.")
    for name, label in (("focus_penalty", "A focus penalty"), ("mask_jitter", "Mask jitter")):
        if getattr(recipe, name) > 0 and spec.context != "cell":
            raise ValueError(
                f"{label} needs a model that reads the cell alone; {arch!r} sees the "
                "cell's surroundings. Use --arch default-cell."
            )
    if recipe.init:
        from .metadata import read_info

        info = read_info(recipe.init)
        if info is None or info.architecture != arch:
            found = "no metadata" if info is None else f"architecture {info.architecture!r}"
            raise ValueError(
                f"The start model {recipe.init} has {found}; it must be a {arch!r} model."
            )
        theirs = {k: info.data.get("split", {}).get(k) for k in ("train", "val", "test")}
        if theirs != split:
            raise ValueError(
                f"The start model {recipe.init} was trained on another split of the data; "
                "fine-tuning it would let this run's test images leak into training. Use "
                "the same data folder and --seed."
            )


def _fit(model, arrays: dict, spec, options: dict):
    """Fit with the best-weights callback; returns (callback, interrupted)."""
    counts = np.bincount(arrays["train"].y, minlength=options["n_classes"])
    class_weight = {
        i: len(arrays["train"].y) / (len(counts) * max(c, 1)) for i, c in enumerate(counts)
    }
    keep, callbacks = _callbacks(options["patience"], options["max_minutes"])
    seed, batch_size = options["seed"], options["batch_size"]
    train_data = _tf_dataset(arrays["train"], batch_size, options["recipe"], seed)
    try:
        model.fit(
            train_data,
            validation_data=_tf_dataset(arrays["val"], batch_size),
            epochs=options["epochs"],
            shuffle=False,
            class_weight=class_weight,
            callbacks=callbacks,
            verbose=2,
        )
    except KeyboardInterrupt:
        return keep, True
    return keep, False


def _restore_best(model, keep, interrupted: bool, out: Path) -> None:
    """Put the best weights back, or raise `NothingSaved` when no epoch gave any."""
    if keep.best_weights is None:
        if interrupted:
            why = "Training was interrupted before its first epoch finished"
        else:
            why = "No epoch reached a finite validation loss (the loss diverged or was NaN)"
        kept = f"the existing {out} was not touched" if out.exists() else f"no {out} was written"
        raise NothingSaved(
            f"{why}, so there is no trained model; nothing was saved and {kept}. Run again and "
            "let at least one epoch finish (its line with val_loss is printed when it ends).",
            interrupted,
        )
    if interrupted:
        print(
            f"\nInterrupted: saving the best model so far (epoch {keep.best_epoch + 1}).",
            flush=True,
        )
    model.set_weights(keep.best_weights)


def _metrics(model, arrays: dict, parts: dict, data, spec) -> dict:
    """Image-level (and, for cell models, cell-level) metrics on validation and test."""
    metrics = {}
    for part in ("val", "test"):
        probs = field_probabilities(model, arrays[part], parts[part])
        metrics[part] = evaluation.classification_metrics(
            data.labels[parts[part]], probs, data.class_names, ["Benign"]
        )
        if spec.kind == "cell":
            cell_probs = model.predict(arrays[part].x, batch_size=256, verbose=0)
            metrics[f"{part}_cells"] = evaluation.classification_metrics(
                arrays[part].y, cell_probs, data.class_names, ["Benign"]
            )
    return metrics


def _reliability(model, arrays: dict, spec) -> tuple[dict, dict]:
    """The OOD score and temperature of a cell model (`reliability`); none for fields."""
    from . import reliability
    from .ood import has_logits_layer

    if spec.kind != "cell" or not has_logits_layer(model):
        return {}, {}
    return reliability.fit_on(model, {k: (v.x, v.y) for k, v in arrays.items()})


def _command() -> str:
    if Path(sys.argv[0]).name == "napari-leukemia":
        return "napari-leukemia " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return " ".join(sys.argv)


def _data_info(data_dir, data, parts: dict, arrays: dict, seed: int) -> dict:
    return {
        "data_dir": str(Path(data_dir)),
        "counts": data.counts(),
        "skipped": len(data.skipped),
        "split": {
            "seed": seed,
            "method": "StratifiedGroupKFold 80/10/10, duplicate "
            "groups (sha256 + 256-bit dHash distance <= 24) kept together",
            **{k: [data.paths[i].name for i in v] for k, v in parts.items()},
        },
        "n_inputs": {k: int(len(v.y)) for k, v in arrays.items()},
    }


def _history(model, keep, interrupted: bool, minutes: float) -> dict:
    history = getattr(model, "history", None)
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()} if history else {}
    return {
        **values,
        "best_epoch": keep.best_epoch + 1,
        "interrupted": interrupted,
        "timed_out": keep.timed_out,
        "minutes": round(minutes, 2),
    }


def save_model(model, out: Path, info: ModelInfo, overwrite: bool) -> None:
    """Save the model and its metadata, replacing the old pair only when both are written.

    Both go to temporary files in `out`'s folder first and are then renamed into place,
    so a full disk, an error or Ctrl+C while saving leaves any old files as they were.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with safe_files.staged([out, metadata_path(out)], overwrite=overwrite) as (tmp, tmp_meta):
        model.save(tmp, overwrite=True)
        info.sha256 = file_sha256(tmp)
        tmp_meta.write_text(info.to_json() + "\n")


def train(
    data_dir: Path | str,
    out: Path | str,
    arch: str = "default",
    epochs: int = 60,
    batch_size: int = 64,
    patience: int = 10,
    seed: int = 0,
    max_minutes: float | None = 40.0,
    max_images: int | None = None,
    overwrite: bool = False,
    recipe: Recipe | None = None,
) -> ModelInfo:
    """Train `arch` on `data_dir`, save ``out`` (.keras) and ``out`` .json; return the info.

    `recipe`: stain jitter, focus penalty, start model (see `Recipe`). Raises
    `NothingSaved` (and changes no file) when no epoch finished, e.g. on Ctrl+C during
    the first one.
    """
    recipe = recipe or Recipe()
    out = Path(out)
    check_request(out, epochs, batch_size, overwrite)
    spec = architectures.input_spec(arch)
    started = time.monotonic()
    data = scan_classes(data_dir)
    parts = _subsample(dataset.split(data, seed=seed), max_images, seed)
    check_recipe(
        recipe, arch, spec, {k: [data.paths[i].name for i in v] for k, v in parts.items()}
    )
    arrays = _load_inputs(data, parts, spec, int(recipe.mask_jitter))
    keras_module().utils.set_random_seed(seed)
    model, fitted = _compiled_model(arch, len(data.class_names), spec, recipe)
    options = dict(
        epochs=epochs,
        batch_size=batch_size,
        patience=patience,
        seed=seed,
        max_minutes=max_minutes,
        recipe=recipe,
        n_classes=len(data.class_names),
    )
    keep, interrupted = _fit(fitted, arrays, spec, options)
    _restore_best(fitted, keep, interrupted, out)
    metrics = _metrics(model, arrays, parts, data, spec)
    ood_fit, calibration_fit = _reliability(model, arrays, spec)
    minutes = (time.monotonic() - started) / 60
    info = ModelInfo(
        class_names=list(data.class_names),
        input=spec,
        architecture=arch,
        data=_data_info(data_dir, data, parts, arrays, seed),
        metrics=metrics,
        history=_history(fitted, keep, interrupted, minutes),
        command=_command(),
        training=asdict(recipe),
        ood=ood_fit,
        calibration=calibration_fit,
    )
    save_model(model, out, info, overwrite)
    test = metrics["test"]
    print(
        f"Saved {out} ({out.stat().st_size / 1e6:.2f} MB) after {minutes:.1f} min. "
        f"Test accuracy {test['accuracy']:.4f}, sensitivity {test['sensitivity']}, "
        f"specificity {test['specificity']}.",
        flush=True,
    )
    return info
