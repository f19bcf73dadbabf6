"""Options of the box components (a recipe's ``with:`` blocks). Light: pydantic only, no torch."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from defectkit.options import StrictOptions

#: the CPU-sized architecture defectkit builds itself: torchvision's FCOS head on a small CNN
SMALL_MODEL = "fcos_small"


class SmallBackboneConfig(StrictOptions):
    """The backbone of ``fcos_small``: conv stages halving the resolution, the last three feed the head."""

    channels: list[int] = Field(
        [16, 32, 64, 96], min_length=3, description="output channels per stage; each stage halves the resolution"
    )
    head_channels: int = Field(64, ge=8, description="channels of the feature pyramid and of the FCOS head")
    head_convs: int = Field(2, ge=1, le=4, description="convolutions in each FCOS head branch (torchvision uses 4)")


class DetectorOptions(StrictOptions):
    """The torchvision detector and how it trains: shared by ``torchvision_boxes`` and ``box_compare``."""

    model: str = Field(
        "fasterrcnn_resnet50_fpn",
        description="a torchvision detection builder (fasterrcnn_resnet50_fpn, fasterrcnn_mobilenet_v3_large_fpn, "
        "retinanet_resnet50_fpn, fcos_resnet50_fpn, ...) or fcos_small (CPU-sized, always from scratch)",
    )
    weights: str | None = Field(
        None, description="the builder's weights by enum name (DEFAULT, COCO_V1); none: random initialisation"
    )
    weights_backbone: str | None = Field(
        None, description="the backbone's weights by enum name (DEFAULT, IMAGENET1K_V1); none: random initialisation"
    )
    small: SmallBackboneConfig = Field(default_factory=SmallBackboneConfig, description="fcos_small's backbone")
    image_size: int = Field(512, ge=32, le=2048, description="images are resized to this square size for the model")
    classes: list[str] | None = Field(None, description="the box classes in order; none: every box label found")
    batch_size: int = Field(8, ge=1, description="images per optimizer step (shared out between processes)")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate: linear warm-up, then cosine decay to zero")
    warmup_steps: int = Field(50, ge=0, description="optimizer steps of linear learning-rate warm-up")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    hflip: bool = Field(True, description="flip half the training images (and their boxes) left to right")
    vflip: bool = Field(False, description="flip half of them top to bottom as well (steel has no up or down)")
    include_good: bool = Field(True, description="train on images without defects too (as images with no boxes)")
    log_every: int = Field(10, ge=1, description="optimizer steps between loss points on the curves")
    cpu_threads: int | None = Field(None, ge=1, description="torch threads on a CPU; none: torch's default")


class BoxTrainConfig(DetectorOptions):
    """Train a torchvision box detector on the boxes of the recipe's data."""

    train_split: str = Field("train", description="split the detector trains on")
    val_split: str | None = Field("val", description="split scored (map50) after each epoch; none or empty: none")
    epochs: int = Field(20, ge=1, description="passes over the training images")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints (the last epoch always saves)")


class BoxCompareConfig(DetectorOptions):
    """The same detector trained on real images, then on real + generated ones, over seeds: the map50 gain."""

    steps: int = Field(
        300, ge=1, description="optimizer steps per training, the same for both arms (so only the data differs)"
    )
    seeds: list[int] = Field(
        [0, 1, 2], min_length=2, description="one paired comparison per seed (same initial weights for both arms)"
    )
    train_split: str = Field("train", description="the real training images")
    eval_split: str = Field("test", description="held-out real images both arms are scored on (map50)")
    real_per_class: int | None = Field(None, ge=1, description="at most this many real training images per class")
    generated_per_class: int | None = Field(None, ge=1, description="at most this many generated images per class")
    min_box_pixels: int = Field(
        4, ge=1, description="a generated mask's connected region becomes a box from this many pixels on"
    )


class BoxDetectConfig(StrictOptions):
    """Run a trained box detector over a split and write one record per image."""

    split: str = Field("test", description="the images to detect on")
    model: str | None = Field(
        None, description="a box_model folder (a train step's checkpoint); none: the box_model artifact"
    )
    score_threshold: float = Field(
        0.05, ge=0, le=1, description="boxes below this confidence are not written (the metrics threshold further)"
    )
    max_detections: int = Field(100, ge=1, description="at most this many boxes per image")
    batch_size: int = Field(16, ge=1, description="images per forward pass")
    overlays: int = Field(8, ge=0, description="box overlay PNGs drawn for the report")
    overlay_threshold: float = Field(0.5, ge=0, le=1, description="boxes drawn on the overlays: at least this score")


class BoxMapConfig(StrictOptions):
    """mAP and thresholded precision and recall of the box_predictions artifact."""

    split: str = Field("test", description="the split whose samples hold the ground-truth boxes")
    score_threshold: float = Field(0.5, ge=0, le=1, description="confidence at which precision and recall count")
    iou_threshold: float = Field(0.5, gt=0, le=1, description="IoU a box needs with a ground-truth box to count")


class DetectionAccuracyConfig(StrictOptions):
    """Does a detector trained on real images find the intended defect in each generated image?"""

    model: str | None = Field(
        None,
        description="a box_model folder trained on real images; none: the box_model artifact "
        "(pick a train step with inputs: {box_model: STEP_ID})",
    )
    score_threshold: float = Field(0.5, ge=0, le=1, description="a found box counts from this confidence on")
    batch_size: int = Field(16, ge=1, description="images per forward pass")
    overlays: int = Field(8, ge=0, description="generated images drawn with their boxes for the report")


class YoloTrainConfig(StrictOptions):
    """Train an ultralytics YOLO detector (AGPL-3.0; ``pip install 'defectkit[yolo]'``) on the data's boxes."""

    model: str = Field(
        "yolo11n.yaml",
        description="a model YAML (an ultralytics name such as yolo11n.yaml, or a file): random weights, offline; "
        "or weights by name (yolo11n.pt, fetched by ultralytics unless offline) or by path",
    )
    offline: bool = Field(
        True,
        description="no network at all (YOLO_OFFLINE, no plots so no font download, AMP off so no check-weights "
        "download); a weights name must then be a local file",
    )
    image_size: int = Field(640, ge=32, le=2048, description="ultralytics' imgsz: the training and inference size")
    classes: list[str] | None = Field(None, description="the box classes in order; none: every box label found")
    train_split: str = Field("train", description="split the detector trains on")
    val_split: str = Field("val", description="split ultralytics validates on after each epoch (mAP50 curves)")
    epochs: int = Field(100, ge=1, description="passes over the training images")
    batch_size: int = Field(16, ge=1, description="images per optimizer step")
    lr: float | None = Field(None, gt=0, description="ultralytics' lr0; none: its default for the optimizer")
    include_good: bool = Field(True, description="train on images without defects too (as images with no boxes)")
    device: str | None = Field(
        None, description="ultralytics' device (cpu, 0, 0,1); none: the recipe's device (ultralytics runs its own DDP)"
    )
    train_args: dict[str, Any] = Field(
        default_factory=dict,
        description="further ultralytics train arguments (mosaic, hsv_h, close_mosaic, optimizer ...), checked by ultralytics",
    )


class ClassificationAccuracyConfig(StrictOptions):
    """A classifier trained on real images labels the generated ones: the share labelled as intended."""

    train_split: str = Field("train", description="real labelled images the classifier trains on")
    eval_split: str | None = Field(
        "test", description="held-out real images it is also scored on (real_accuracy); none or empty: skip"
    )
    image_size: int = Field(64, ge=16, le=512, description="images are resized to this square size")
    steps: int = Field(300, ge=1, description="optimizer steps (AdamW, cosine decay)")
    batch_size: int = Field(32, ge=1, description="images per optimizer step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    include_good: bool = Field(False, description="keep normal ('good') images as a class")
    seed: int | None = Field(None, description="the classifier's initialisation and batches; none: the recipe seed")
