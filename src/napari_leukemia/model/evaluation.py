"""Classification metrics (pure numpy/scikit-learn) and their plots.

Besides accuracy and per-class precision/recall/F1, the malignant-versus-benign call
(Early Pre-B + Pre-B + Pro-B against Benign) is scored with document 001's metrics:
sensitivity, specificity and false-negative rate. A false negative (a malignant
image called benign) is the costly error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metadata import malignant_probability


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, class_names: list[str], benign: list[str]
) -> dict:
    """Metrics of predicted class `probabilities` (N, classes) against labels `y_true`."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, int)
    probabilities = np.asarray(probabilities, float)
    y_pred = probabilities.argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    benign_idx = [class_names.index(b) for b in benign if b in class_names]
    malignant_true = ~np.isin(y_true, benign_idx)
    malignant_prob = malignant_probability(probabilities, class_names, benign)
    malignant_pred = malignant_prob >= 0.5
    unknown = bool(len(malignant_prob)) and bool(np.isnan(malignant_prob).all())
    tp = int(np.sum(malignant_true & malignant_pred))
    fn = int(np.sum(malignant_true & ~malignant_pred))
    tn = int(np.sum(~malignant_true & ~malignant_pred))
    fp = int(np.sum(~malignant_true & malignant_pred))
    return {
        "n_images": int(len(y_true)),
        "accuracy": float(np.mean(y_pred == y_true)) if len(y_true) else float("nan"),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        # unknown (None) when the model names no benign class: P(malignant) is NaN
        "sensitivity": None if unknown else _ratio(tp, tp + fn),
        "specificity": None if unknown else _ratio(tn, tn + fp),
        "false_negative_rate": None if unknown else _ratio(fn, tp + fn),
        "malignant_confusion": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
    }


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def plot_confusion_matrix(metrics: dict, path: Path | str, title: str = "") -> Path:
    """Save the confusion matrix (counts and row-normalised shading) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(metrics["confusion_matrix"])
    names = metrics["class_names"]
    rows = matrix.sum(axis=1, keepdims=True)
    shade = np.divide(matrix, rows, out=np.zeros_like(matrix, float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=120)
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if shade[i, j] > 0.5 else "black",
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {metrics['accuracy']:.3f} (n={metrics['n_images']})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_history(history: dict, path: Path | str) -> Path | None:
    """Save training curves (loss and accuracy per epoch) as a PNG, if known."""
    if not history or "loss" not in history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def evaluate_folder(data_dir: Path | str, model=None, split: str | None = None) -> dict:
    """Image-level metrics of `model` on a class-per-folder dataset.

    `split` ("train", "val" or "test") restricts the images to that part of the split
    recorded in the model's metadata, e.g. the held-out test images. Cell models also
    get cell-level metrics (each cell carries its field's label).
    """
    from ..images import read_image
    from .classify import LoadedModel, load_model
    from .dataset import scan
    from .inputs import field_inputs

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    data = scan(data_dir, class_names=loaded.class_names)
    indices = np.arange(len(data))
    if split is not None:
        names = set(loaded.info.data.get("split", {}).get(split, []))
        if not names:
            raise ValueError(f"The model's metadata records no {split!r} split.")
        indices = np.asarray([i for i, p in enumerate(data.paths) if p.name in names], int)
        if indices.size == 0:
            raise ValueError(
                f"None of the {len(names)} images of the model's {split!r} split are in "
                f"{data_dir}. Evaluate on the folder the model was trained from, or drop "
                "the split to evaluate every image."
            )
    field_probs, cell_probs, cell_labels = [], [], []
    for i in indices:
        batch, cells = field_inputs(read_image(data.paths[i]), loaded.info.input)
        probs = loaded.predict(batch)
        field_probs.append(probs.mean(axis=0))
        if cells:
            cell_probs.append(probs)
            cell_labels.extend([data.labels[i]] * len(probs))
    benign = loaded.info.benign_classes
    result = classification_metrics(
        data.labels[indices],
        np.asarray(field_probs).reshape(len(indices), -1),
        loaded.class_names,
        benign,
    )
    result["skipped"] = [{"path": p, "reason": r} for p, r in data.skipped]
    result["split"] = split or "all"
    if cell_probs:
        result["cells"] = classification_metrics(
            np.asarray(cell_labels), np.concatenate(cell_probs), loaded.class_names, benign
        )
    return result
