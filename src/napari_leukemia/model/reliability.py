"""Fit what a model needs to say how far to trust a call, and store it in its metadata.

Two numbers per call come from here: an out-of-distribution score (`ood`: is this cell
like the training cells?) and calibrated probabilities (`calibration`: one temperature
for the logits). Both are fitted on the model's own recorded split — the score on the
training cells, its threshold and the temperature on the validation cells — and
checked on the test cells, whose figures are stored beside them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import calibration, ood


def fit_on(keras_model, parts: dict) -> tuple[dict, dict]:
    """(ood, calibration) metadata from `parts` {"train"|"val"|"test": (inputs, labels)}."""
    layers = ood.feature_layers(keras_model)
    outputs = {k: ood.features_and_logits(keras_model, x, layers) for k, (x, _) in parts.items()}
    labels = {k: np.asarray(y) for k, (_, y) in parts.items()}
    scorer = ood.fit(outputs["train"][0], labels["train"], outputs["val"][0], layers)
    flagged = {
        k: float(np.mean(scorer.scores(outputs[k][0]) > scorer.threshold)) for k in ("val", "test")
    }
    temperature = calibration.fit_temperature(outputs["val"][1], labels["val"])
    report = {"temperature": round(temperature, 4)}
    for k in ("val", "test"):
        logits, y = outputs[k][1], labels[k]
        report[k] = {
            "nll": [calibration.nll(logits, y), calibration.nll(logits, y, temperature)],
            "ece": [
                calibration.expected_calibration_error(calibration.softmax(logits), y),
                calibration.expected_calibration_error(
                    calibration.softmax(logits, temperature), y
                ),
            ],
        }
    report["note"] = "nll and ece: [before, after] temperature scaling, cell level"
    return {**scorer.to_dict(), "flagged": flagged, "fitted_on": "train cells"}, report


def fit_model(model_path: Path | str, data_dir: Path | str, overwrite: bool = False) -> dict:
    """Fit the OOD score and temperature of a saved cell model on its recorded split of
    `data_dir`, and write them into its metadata file (atomically; the model file is not
    touched). Refuses a model that has them unless `overwrite`."""
    from ..images import read_image
    from .classify import load_model
    from .dataset import scan
    from .inputs import field_inputs
    from .metadata import write_info

    loaded = load_model(model_path)
    info = loaded.info
    if (info.ood or info.calibration) and not overwrite:
        raise FileExistsError(
            f"{model_path} already has an OOD score and calibration in its metadata; pass "
            "--overwrite to fit them again."
        )
    if not ood.has_logits_layer(loaded.keras_model):
        raise ValueError(
            f"{model_path} has no layer named {ood.LOGITS_LAYER!r} (the pre-softmax scores), "
            "so its features and logits cannot be read; the models of `napari-leukemia "
            "train` have one."
        )
    split = info.data.get("split", {})
    if not all(split.get(k) for k in ("train", "val", "test")):
        raise ValueError(f"The metadata of {model_path} records no train/val/test split.")
    data = scan(data_dir, class_names=loaded.class_names)
    by_name = {p.name: i for i, p in enumerate(data.paths)}
    parts = {}
    for part in ("train", "val", "test"):
        missing = [n for n in split[part] if n not in by_name]
        if missing:
            raise ValueError(
                f"{len(missing)} images of the model's {part} split (e.g. {missing[0]}) are "
                f"not in {data_dir}; give the folder the model was trained from."
            )
        xs, ys = [], []
        for name in split[part]:
            batch, _ = field_inputs(read_image(data.paths[by_name[name]]), info.input)
            xs.append(batch)
            ys += [data.labels[by_name[name]]] * len(batch)
        parts[part] = (np.concatenate(xs).astype(np.float32), np.asarray(ys))
    info.ood, info.calibration = fit_on(loaded.keras_model, parts)
    write_info(model_path, info)
    return {"ood": info.ood, "calibration": info.calibration}
