"""Options of the ``augment_compare`` trainer (a recipe's ``with:`` block). Light: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from defectkit.options import StrictOptions


class AugmentCompareConfig(StrictOptions):
    """Train the same classifier twice per seed, on real images and on real + generated ones."""

    model: Literal["small_cnn", "resnet18"] = Field(
        "small_cnn", description="small_cnn: four conv blocks (CPU-sized); resnet18: torchvision's, from scratch"
    )
    image_size: int = Field(64, ge=16, le=512, description="images are resized to image_size x image_size")
    steps: int = Field(
        300, ge=1, description="optimizer steps per training, the same for both arms (so only the data differs)"
    )
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate, cosine-decayed to zero")
    weight_decay: float = Field(1e-4, ge=0)
    seeds: list[int] = Field(
        [0, 1, 2], min_length=2, description="one paired comparison per seed; two or more give the spread"
    )
    train_split: str = Field("train", description="the real labelled training images")
    eval_split: str = Field("test", description="held-out real images both arms are evaluated on")
    real_per_class: int | None = Field(
        None, ge=1, description="use at most this many real training images per class (the scarce-data setting)"
    )
    generated_per_class: int | None = Field(None, ge=1, description="use at most this many generated images per class")
    include_good: bool = Field(
        False, description="keep normal ('good') images as a class; by default the classes are the defect types"
    )
