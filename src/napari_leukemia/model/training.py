"""Train a classifier on a class-per-folder dataset and save it with its metadata.

Pipeline: scan (skipping unreadable files) → duplicate-aware stratified split →
inputs prepared as the architecture's `InputSpec` says (cell ROIs or whole fields) →
augmentation (flips, 90° rotations, zoom, shear, Gaussian noise, brightness /
contrast / hue / saturation jitter) → class-weighted training with early stopping on
validation loss → the best weights are kept, also when the run is interrupted with
Ctrl+C or reaches its time budget → image-level metrics on validation and test.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import architectures, dataset, evaluation
from .backend import keras_module
from .inputs import field_inputs
from .metadata import ModelInfo, write_info


@dataclass
class Arrays:
    """Model inputs of a set of images; `field` maps each input to its image."""

    x: np.ndarray
    y: np.ndarray
    field: np.ndarray


def load_arrays(data: dataset.Dataset, indices: np.ndarray, spec) -> Arrays:
    """Prepare the model inputs of the images at `indices` (all cells of each field)."""
    from skimage import io

    xs, ys, fields = [], [], []
    for index in indices:
        batch, _ = field_inputs(io.imread(data.paths[index]), spec)
        xs.append(batch)
        ys.extend([data.labels[index]] * len(batch))
        fields.extend([index] * len(batch))
    return Arrays(np.concatenate(xs).astype(np.float32), np.asarray(ys), np.asarray(fields))


def augmenter(channels: int, seed: int):
    """A Keras pipeline of random augmentations for [0, 1] images."""
    keras = keras_module()
    layers = keras.layers
    steps = [
        layers.RandomFlip("horizontal_and_vertical", seed=seed),
        layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=seed),
        layers.RandomShear(x_factor=0.15, y_factor=0.15, fill_mode="reflect", seed=seed),
        layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed),
        layers.RandomContrast(0.15, seed=seed),
    ]
    if channels == 3:
        steps += [
            layers.RandomHue(0.04, value_range=(0.0, 1.0), seed=seed),
            layers.RandomSaturation((0.4, 0.6), value_range=(0.0, 1.0), seed=seed),
        ]
    steps.append(layers.GaussianNoise(0.02, seed=seed))
    return keras.Sequential(steps, name="augment")


def _tf_dataset(arrays: Arrays, batch_size: int, augment=None, seed: int = 0):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((arrays.x, arrays.y))
    if augment is not None:
        data = data.shuffle(len(arrays.y), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if augment is not None:

        def apply(images, labels):
            k = tf.random.uniform([], 0, 4, dtype=tf.int32, seed=seed)
            images = tf.image.rot90(images, k)
            images = tf.clip_by_value(augment(images, training=True), 0.0, 1.0)
            return images, labels

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
) -> ModelInfo:
    """Train `arch` on `data_dir`, save ``out`` (.keras) and ``out`` .json; return the info."""
    out = Path(out)
    if out.suffix != ".keras":
        raise ValueError(f"The model file must end in .keras, got {out.name}.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite.")
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    spec = architectures.input_spec(arch)
    started = time.monotonic()

    data = dataset.scan(data_dir)
    print(f"Found {len(data)} images: {data.counts()}; skipped {len(data.skipped)}.", flush=True)
    for path, reason in data.skipped[:20]:
        print(f"  skipped {path}: {reason}", flush=True)
    parts = dataset.split(data, seed=seed)
    if max_images:  # a quick run on a few images per split (tests, smoke runs)
        rng = np.random.default_rng(seed)
        parts = {
            k: np.sort(
                rng.permutation(v)[: max(4, max_images // 5 if k != "train" else max_images)]
            )
            for k, v in parts.items()
        }
    arrays = {k: load_arrays(data, v, spec) for k, v in parts.items()}
    print(
        "Inputs: "
        + ", ".join(f"{k} {len(v.y)} from {len(parts[k])} images" for k, v in arrays.items()),
        flush=True,
    )

    model = architectures.build(arch, n_classes=len(data.class_names), input_shape=spec.shape)
    model.compile(
        optimizer=keras.optimizers.Adam(architectures.learning_rate(arch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    counts = np.bincount(arrays["train"].y, minlength=len(data.class_names))
    class_weight = {
        i: len(arrays["train"].y) / (len(counts) * max(c, 1)) for i, c in enumerate(counts)
    }
    keep, callbacks = _callbacks(patience, max_minutes)
    train_data = _tf_dataset(arrays["train"], batch_size, augmenter(spec.channels, seed), seed)
    val_data = _tf_dataset(arrays["val"], batch_size)
    interrupted = False
    try:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            shuffle=False,
            class_weight=class_weight,
            callbacks=callbacks,
            verbose=2,
        )
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: saving the best model so far.", flush=True)
    if keep.best_weights is not None:
        model.set_weights(keep.best_weights)
    history = (
        {k: [float(v) for v in vals] for k, vals in model.history.history.items()}
        if getattr(model, "history", None)
        else {}
    )

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
    minutes = (time.monotonic() - started) / 60
    info = ModelInfo(
        class_names=list(data.class_names),
        input=spec,
        architecture=arch,
        data={
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
        },
        metrics=metrics,
        history={
            **history,
            "best_epoch": keep.best_epoch + 1,
            "interrupted": interrupted,
            "timed_out": keep.timed_out,
            "minutes": round(minutes, 2),
        },
        command="napari-leukemia " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if Path(sys.argv[0]).name == "napari-leukemia"
        else " ".join(sys.argv),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, overwrite=True)
    write_info(out, info)
    test = metrics["test"]
    print(
        f"Saved {out} ({out.stat().st_size / 1e6:.2f} MB) after {minutes:.1f} min. "
        f"Test accuracy {test['accuracy']:.4f}, sensitivity {test['sensitivity']}, "
        f"specificity {test['specificity']}.",
        flush=True,
    )
    return info
