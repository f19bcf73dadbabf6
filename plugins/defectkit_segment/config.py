"""Options of the segment plugin's components (a recipe's ``with:`` blocks). Light: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from defectkit.options import StrictOptions


class SegmenterModelConfig(StrictOptions):
    """The model and its training: shared by the ``segmenter`` trainer and ``segment_compare``."""

    encoder: str = Field(
        "small",
        description="small (four conv stages, CPU-sized), a torchvision ResNet (resnet18, resnet34, resnet50) "
        "or timm:<name> (any timm model with features_only)",
    )
    pretrained: bool = Field(
        False, description="load the encoder's pretrained weights by name (downloads once); false: random weights"
    )
    width: int = Field(16, ge=4, le=256, description="channels of the first stage of the small encoder and the decoder")
    image_size: int = Field(64, ge=32, le=1024, description="images and masks are resized to image_size x image_size")
    steps: int = Field(300, ge=1, description="optimizer steps (the same for every arm of a comparison)")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate, cosine-decayed to zero")
    weight_decay: float = Field(1e-4, ge=0)
    defect_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of each batch drawn from the defective pairs (the rest: good images with empty masks); "
        "few real defects among many good images would otherwise teach the model to predict nothing",
    )
    defect_split: str = Field("gen_train", description="real defective images with masks to train on")
    good_split: str = Field("train", description="good images, trained on with empty masks")
    max_good: int | None = Field(None, ge=1, description="use at most this many good images")
    log_every: int = Field(10, ge=1, description="log the training loss every this many steps")


class SegmenterConfig(SegmenterModelConfig):
    """Train one segmenter on real pairs (and the generated pairs of an earlier step, when present)."""

    use_generated: bool = Field(
        True, description="add the image-mask pairs of an earlier generate step's generated_images when there is one"
    )
    val_split: str = Field(
        "val",
        description="the split the IoU/Dice threshold is chosen on; when it has no defect with a mask, the real "
        "training pairs are used (and the metrics say so)",
    )
    checkpoint_every: int = Field(100, ge=1, description="save a resumable checkpoint every this many steps")


class SegmentDetectConfig(StrictOptions):
    """Write per-pixel defect probabilities of a trained segmenter in the eval-maps layout."""

    split: str = Field("test", description="the images to write maps for")
    overlays: int = Field(6, ge=0, description="heat-map overlays drawn for the report")


class CopyPasteConfig(StrictOptions):
    """Cut real defects out by their masks and paste them into good images."""

    images_per_class: int = Field(10, ge=1, description="pasted images per defect type")
    defect_split: str = Field("gen_train", description="real defective images (with masks) to cut the defects from")
    good_split: str = Field("train", description="good images to paste into")
    scale: tuple[float, float] = Field((0.8, 1.25), description="range of the random scale of a pasted defect")
    rotation: float = Field(180.0, ge=0, le=180, description="random rotation in degrees, uniform in ±rotation")
    flip: bool = Field(True, description="random horizontal and vertical flips")
    feather: float = Field(
        2.0,
        ge=0,
        description="width in pixels of the ring around the defect, cut from its own surroundings, over which the "
        "paste fades out (alpha feathering: no hard seam; the defect's pixels themselves are pasted whole); 0: a hard cut",
    )
    placement: Literal["auto", "anywhere", "foreground"] = Field(
        "auto",
        description="anywhere in the image, inside the object's foreground, or auto: foreground for object "
        "categories (MVTec AD's objects, synthetic bottle and pill), anywhere for textures",
    )
    foreground_threshold: float = Field(
        30.0,
        gt=0,
        description="foreground: pixels differing by more than this (0-255, RGB distance) from the border colour",
    )
    seed: int | None = Field(None, description="random seed (default: the recipe's)")


class SegmentCompareConfig(SegmenterModelConfig):
    """Per seed and arm, train the same segmenter on real pairs alone and on real + each generator's pairs."""

    seeds: list[int] = Field([0, 1, 2], min_length=2, description="one paired comparison per seed; two or more")
    eval_split: str = Field("test", description="held-out real images every arm is scored on")
    generated_per_class: int | None = Field(None, ge=1, description="use at most this many generated pairs per type")
    fpr_limit: float = Field(0.3, gt=0, le=1, description="the FPR up to which PRO is integrated (AUPRO)")
