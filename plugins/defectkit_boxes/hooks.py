"""Hook implementations of the boxes plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from __future__ import annotations

from defectkit import Component, hookimpl

_YOLO_LICENCE = "ultralytics YOLO, AGPL-3.0 (pip install 'defectkit[yolo]')"


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="torchvision_boxes",
            factory="defectkit_boxes.train:BoxTrainer",
            config="defectkit_boxes.config:BoxTrainConfig",
            summary="box detector (torchvision Faster R-CNN, RetinaNet, FCOS or the CPU-sized fcos_small; BSD-3) on the data's boxes",
            extra="boxes",
        ),
        Component(
            kind="trainer",
            name="box_compare",
            factory="defectkit_boxes.compare:BoxCompare",
            config="defectkit_boxes.config:BoxCompareConfig",
            summary="closes the loop for boxes: one detector on real images, then real + generated (boxes from their masks), over seeds; the map50 gain with its 95% interval",
            extra="boxes",
        ),
        Component(
            kind="trainer",
            name="yolo",
            factory="defectkit_boxes.yolo:YoloTrainer",
            config="defectkit_boxes.config:YoloTrainConfig",
            summary=f"box detector: {_YOLO_LICENCE}; a model YAML (offline) or weights by name or path",
            extra="yolo",
        ),
    ]


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="torchvision_boxes",
            factory="defectkit_boxes.detect:BoxDetector",
            config="defectkit_boxes.config:BoxDetectConfig",
            summary="boxes, classes and scores for every image of a split (box_predictions) and box overlays",
            extra="boxes",
        ),
        Component(
            kind="detector",
            name="yolo",
            factory="defectkit_boxes.yolo:YoloDetector",
            config="defectkit_boxes.config:BoxDetectConfig",
            summary=f"boxes of a trained yolo model for every image of a split (box_predictions), overlays; {_YOLO_LICENCE}",
            extra="yolo",
        ),
    ]


@hookimpl
def defectkit_metrics() -> list[Component]:
    return [
        Component(
            kind="metric",
            name="box_map",
            factory="defectkit_boxes.metrics:BoxMapMetric",
            config="defectkit_boxes.config:BoxMapConfig",
            summary="map50, map50_95, ap50/<class> (COCO evaluation via torchmetrics), precision and recall at a threshold",
            extra="boxes",
        ),
        Component(
            kind="metric",
            name="detection_accuracy",
            factory="defectkit_boxes.metrics:DetectionAccuracyMetric",
            config="defectkit_boxes.config:DetectionAccuracyConfig",
            summary="share of generated images in which a detector trained on real images finds the intended defect",
            extra="boxes",
        ),
        Component(
            kind="metric",
            name="classification_accuracy_score",
            factory="defectkit_boxes.classify:ClassificationAccuracyMetric",
            config="defectkit_boxes.config:ClassificationAccuracyConfig",
            summary="share of generated images a classifier trained on real images labels as their intended class",
            extra="boxes",
        ),
    ]
