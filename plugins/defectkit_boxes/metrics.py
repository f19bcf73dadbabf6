"""Box metrics: mAP (torchmetrics' COCO evaluation), thresholded precision and recall, and the detection
accuracy of generated images.

:func:`box_metrics` works without a recipe::

    from defectkit_boxes.metrics import box_metrics
    figures = box_metrics(predictions, truths, classes)   # map50, map50_95, ap50/<class>, precision, recall
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from defectkit.errors import DataError, DefectkitError
from defectkit_boxes.config import BoxMapConfig, DetectionAccuracyConfig
from defectkit_boxes.records import (
    ground_truth,
    read_predictions,
    save_box_overlay,
)


def _targets(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    item = {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.as_tensor(labels)}
    if scores is not None:
        item["scores"] = torch.as_tensor(scores, dtype=torch.float32)
    return item


def precision_recall(
    predictions: Sequence[dict[str, np.ndarray]],
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    score_threshold: float,
    iou_threshold: float,
) -> tuple[float, float, int, int, int]:
    """Precision and recall of the boxes at or above ``score_threshold``: ``(precision, recall, tp, fp, gt)``.

    Per image and class, found boxes are matched greedily in order of score to the unmatched ground-truth box
    of highest IoU, if that IoU reaches ``iou_threshold`` (COCO's matching); each ground-truth box matches once.
    """
    from torchvision.ops import box_iou

    tp = fp = total = 0
    for prediction, (gt_boxes, gt_labels) in zip(predictions, truths, strict=True):
        total += len(gt_boxes)
        keep = prediction["scores"] >= score_threshold
        boxes, labels, scores = prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep]
        for cls in np.unique(labels):
            mine = np.flatnonzero(labels == cls)
            mine = mine[np.argsort(-scores[mine], kind="stable")]
            theirs = np.flatnonzero(gt_labels == cls)
            if len(theirs) == 0:
                fp += len(mine)
                continue
            iou = box_iou(torch.as_tensor(boxes[mine]), torch.as_tensor(gt_boxes[theirs])).numpy()
            taken = np.zeros(len(theirs), bool)
            for row in iou:
                candidates = np.where(taken, -1.0, row)
                best = int(np.argmax(candidates))
                if candidates[best] >= iou_threshold:
                    taken[best] = True
                    tp += 1
                else:
                    fp += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / total if total else 0.0
    return precision, recall, tp, fp, total


def box_metrics(
    predictions: Sequence[dict[str, np.ndarray]],
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    classes: list[str],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """mAP@0.5, mAP@0.5:0.95 (COCO's 101-point interpolated AP, averaged over classes with ground truth),
    AP@0.5 per class, and precision and recall at ``score_threshold``.

    ``predictions``: per image ``boxes`` (N×4 xyxy), ``labels`` (0-based), ``scores``; ``truths``: per image
    ``(boxes, labels)``. A class without any ground-truth box has no AP (it is left out, not reported as 0).
    """
    from torchmetrics.detection import MeanAveragePrecision

    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} images")
    if not any(len(boxes) for boxes, _ in truths):
        raise DataError("box mAP is undefined: no image has a ground-truth box")
    preds = [_targets(p["boxes"], p["labels"], p["scores"]) for p in predictions]
    target = [_targets(boxes, labels) for boxes, labels in truths]
    # COCO's default keeps the 100 best boxes of an image, which is also the detectors' cap
    overall = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    overall.update(preds, target)
    at50 = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True)
    at50.update(preds, target)
    result, result50 = overall.compute(), at50.compute()
    figures = {"map50": float(result["map_50"]), "map50_95": float(result["map"])}
    per_class = result50["map_per_class"].reshape(-1).tolist()
    present = result50["classes"].reshape(-1).tolist()
    for index, value in zip(present, per_class, strict=True):
        if value >= 0:  # -1: no ground truth of this class
            figures[f"ap50/{classes[int(index)]}"] = float(value)
    precision, recall, tp, fp, total = precision_recall(predictions, truths, score_threshold, iou_threshold)
    figures.update(precision=precision, recall=recall, true_positives=tp, false_positives=fp, ground_truth_boxes=total)
    return figures


class BoxMapMetric:
    """``box_map``: the figures of :func:`box_metrics` for the ``box_predictions`` artifact of a detect step."""

    def __init__(self, config: BoxMapConfig | None = None) -> None:
        self.config = config or BoxMapConfig()

    def evaluate(self, ctx) -> dict[str, float]:
        c = self.config
        records, info = read_predictions(ctx.artifact("box_predictions"))
        classes = list(info["classes"])
        samples = ctx.samples(c.split)
        if not samples:
            raise DataError(f"box_map: split {c.split!r} has no samples")
        missing = [s.id for s in samples if s.id not in records]
        if missing:
            raise DefectkitError(
                f"box_map: box_predictions has no record for {len(missing)} of the {len(samples)} {c.split} images "
                f"(first: {missing[0]}); detect on the same split (detect: with: split: {c.split})"
            )
        from defectkit_boxes.records import as_arrays

        truths, predictions = [], []
        for sample in samples:
            boxes, labels = ground_truth(sample, classes, f"box_map ({c.split})")
            truths.append((boxes, labels))
            predictions.append(as_arrays(records[sample.id], classes))
        figures = box_metrics(predictions, truths, classes, c.score_threshold, c.iou_threshold)
        figures["score_threshold"] = c.score_threshold
        return figures


class DetectionAccuracyMetric:
    """``detection_accuracy``: the share of generated images in which a detector trained on real images finds
    a box of the class the image was generated as, at or above ``score_threshold``; per class and overall
    (the mean over images). Where the generator wrote masks, ``detection_mask_hit`` is the share of images
    whose box of the intended class also overlaps the mask."""

    def __init__(self, config: DetectionAccuracyConfig | None = None) -> None:
        self.config = config or DetectionAccuracyConfig()

    def evaluate(self, ctx) -> dict[str, float]:
        from defectkit.generated import read_generated
        from defectkit_boxes.models import load_box_model, to_tensor

        c = self.config
        model_dir = Path(c.model) if c.model else ctx.artifact("box_model")
        loaded = load_box_model(model_dir, ctx.device)
        loaded.set_inference(c.score_threshold, 100)
        generated = read_generated(ctx.artifact("generated_images"))
        if not generated:
            raise DataError("detection_accuracy: the generated_images artifact has no images")
        unknown = sorted({g.defect_type for g in generated} - set(loaded.classes))
        if unknown:
            raise DataError(
                f"detection_accuracy: generated images of {', '.join(unknown)}, which the detector in {model_dir} "
                f"was not trained on (it knows {', '.join(loaded.classes)})"
            )
        from defectkit.overlays import pick_overlays

        hits: dict[str, list[bool]] = {}
        mask_hits: list[bool] = []
        figures_dir = ctx.step_dir / "detection_accuracy"
        # every class in turn, so the report shows each generated class once before any twice
        to_draw = set(pick_overlays([g.defect_type for g in generated], [1] * len(generated), c.overlays))
        for start in ctx.progress(
            range(0, len(generated), c.batch_size),
            total=-(-len(generated) // c.batch_size),
            description="detection accuracy",
        ):
            batch = generated[start : start + c.batch_size]
            images = [s.load_image() for s in batch]
            outputs = loaded.predict([to_tensor(image) for image in images], ctx.device)
            for index, sample, image, out in zip(range(start, start + len(batch)), batch, images, outputs, strict=True):
                wanted = loaded.classes.index(sample.defect_type)
                mine = (out["labels"] == wanted) & (out["scores"] >= c.score_threshold)
                hits.setdefault(sample.defect_type, []).append(bool(mine.any()))
                mask = sample.load_mask() if sample.mask_path is not None else None
                if mask is not None:
                    mask_hits.append(any(_overlaps(box, mask) for box in out["boxes"][mine]))
                if index in to_draw:
                    found = "found" if mine.any() else "missed"
                    path = figures_dir / f"{Path(sample.image_path).stem}.png"
                    save_box_overlay(
                        path,
                        image,
                        out,
                        loaded.classes,
                        c.score_threshold,
                        f"generated {sample.defect_type}: {found}",
                        mask=mask,
                    )
                    ctx.add_figure(path, f"generated {sample.defect_type}: boxes the real-trained detector found (red)")
        figures: dict[str, float] = {
            "detection_accuracy": float(np.mean([h for values in hits.values() for h in values])),
            "detection_accuracy_images": sum(len(v) for v in hits.values()),
            "detection_accuracy_threshold": c.score_threshold,
        }
        for name in sorted(hits):
            figures[f"detection_accuracy/{name}"] = float(np.mean(hits[name]))
        if mask_hits:
            figures["detection_mask_hit"] = float(np.mean(mask_hits))
        return figures


def _overlaps(box: np.ndarray, mask: np.ndarray) -> bool:
    """Whether any mask pixel lies inside the box (its pixel grid, rounded outwards)."""
    height, width = mask.shape
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    return bool(mask[y0:y1, x0:x1].any()) if x1 > x0 and y1 > y0 else False
