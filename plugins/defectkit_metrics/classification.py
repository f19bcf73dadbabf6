"""Classification (accuracy, per-class precision/recall/F1, confusion matrix) and segmentation (IoU, Dice)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from defectkit.errors import DefectkitError


def classification_metrics(labels: Sequence[str], predictions: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro and per-class precision/recall/F1, and the confusion matrix (rows: true class).

    Returns ``{"figures": {name: float}, "confusion": [[int]]}``; per-class
    figures are keyed ``precision/<class>`` and so on.
    """
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({x for x in (*labels, *predictions) if x not in index})
    if unknown:
        raise DefectkitError(f"classification: {', '.join(unknown)} not among the classes {', '.join(classes)}")
    if len(classes) < 2:
        raise DefectkitError(f"classification needs at least two classes, got {list(classes)}")
    target = torch.tensor([index[x] for x in labels])
    preds = torch.tensor([index[x] for x in predictions])
    k = len(classes)
    figures = {
        # micro accuracy: the share of correct predictions, what the seeds call accuracy
        "accuracy": float(multiclass_accuracy(preds, target, k, average="micro")),
        "balanced_accuracy": float(multiclass_accuracy(preds, target, k, average="macro")),
        "precision_macro": float(multiclass_precision(preds, target, k, average="macro")),
        "recall_macro": float(multiclass_recall(preds, target, k, average="macro")),
        "f1_macro": float(multiclass_f1_score(preds, target, k, average="macro")),
    }
    per_class = {
        "precision": multiclass_precision(preds, target, k, average="none"),
        "recall": multiclass_recall(preds, target, k, average="none"),
        "f1": multiclass_f1_score(preds, target, k, average="none"),
    }
    for name, values in per_class.items():
        for cls, value in zip(classes, values.tolist(), strict=True):
            figures[f"{name}/{cls}"] = float(value)
    confusion = multiclass_confusion_matrix(preds, target, k).tolist()
    return {"figures": figures, "confusion": confusion}


def save_confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> Path:
    """The confusion matrix as a PNG (rows: true class, columns: predicted), counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    from defectkit.io import atomic_path

    matrix = np.asarray(confusion)
    size = max(3.0, 0.6 * len(classes) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def load_binary_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A predicted mask PNG as booleans (> 127) at ``size`` (H, W).

    A prediction of another size is resized to the ground truth with nearest
    neighbour; the ground truth itself is never resized.
    """
    from PIL import Image

    if not Path(path).is_file():
        raise DefectkitError(f"{path}: predicted mask missing")
    with Image.open(path) as img:
        gray = img.convert("L")
        if (gray.height, gray.width) != tuple(size):
            gray = gray.resize((size[1], size[0]), Image.NEAREST)
        return np.asarray(gray) > 127


def segmentation_metrics(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> dict[str, float]:
    """IoU and Dice of the defect class.

    ``iou``/``dice`` pool every pixel of the test set (large defects weigh
    more); ``mean_iou``/``mean_dice`` average per image over images where the
    prediction or the ground truth has a defect pixel (an empty-vs-empty image
    has no defined IoU).
    """
    inter_total = union_total = pred_total = true_total = 0
    ious, dices = [], []
    for pred, true in zip(predicted, truth, strict=True):
        inter = int(np.logical_and(pred, true).sum())
        union = int(np.logical_or(pred, true).sum())
        p, t = int(pred.sum()), int(true.sum())
        inter_total, union_total, pred_total, true_total = (
            inter_total + inter,
            union_total + union,
            pred_total + p,
            true_total + t,
        )
        if union:
            ious.append(inter / union)
            dices.append(2 * inter / (p + t))
    if union_total == 0:
        raise DefectkitError("segmentation: neither the predictions nor the ground truth have a defect pixel")
    return {
        "iou": inter_total / union_total,
        "dice": 2 * inter_total / (pred_total + true_total),
        "mean_iou": float(np.mean(ious)),
        "mean_dice": float(np.mean(dices)),
    }
