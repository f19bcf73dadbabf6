"""Options of the dataset formats (a recipe's ``data:`` block). Light: pydantic only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OnError = Literal["raise", "warn"]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_error: OnError = Field(
        "raise",
        description="raise: stop at the first problem with the data; warn: skip bad samples and report counts",
    )


class _OnDisk(_Base):
    root: str = Field(description="the dataset's folder")
    follow_symlinks: bool = Field(
        False, description="read files whose symlinks lead out of root (refused by default: nothing outside is read)"
    )


class MVTecConfig(_OnDisk):
    category: str | list[str] | None = Field(None, description="category folder(s) under root; none: all of them")
    mask_suffix: str = Field("_mask", description="ground_truth/<type>/<stem><suffix>.png")


class VisAConfig(_OnDisk):
    category: str | list[str] | None = Field(None, description="object(s), e.g. pcb1; none: all of them")
    layout: Literal["auto", "raw", "mvtec"] = Field(
        "auto", description="raw: the release with split_csv/; mvtec: the converted train/test/ground_truth layout"
    )
    split_csv: str = Field("split_csv/1cls.csv", description="raw layout: the split file, relative to root")


class NEUDetConfig(_OnDisk):
    test_fraction: float = Field(
        0.3, gt=0, lt=1, description="share of each class held out for test when the layout has no split folders"
    )
    seed: int = Field(0, description="seed of that split")


class FolderConfig(_OnDisk):
    images: str = Field("images", description="image folder, relative to root")
    masks: str = Field("masks", description="mask folder (<stem>.png), relative to root; normal images need none")
    train_labels: str = Field("train_labels.txt", description="'name,label' lines; label 0/1 or a defect class name")
    val_labels: str | None = Field("val_labels.txt", description="the same for the test split; none to skip")


class CaptionsConfig(_OnDisk):
    images: str = Field("images", description="image folder, relative to root")
    captions: str = Field("captions.json", description='{"file.jpg": "a caption", ...}, relative to root')


class DefectFillConfig(_OnDisk):
    category: str | list[str] | None = Field(None, description="object folder(s) under root; none: all")
    mask_suffix: str = Field("_mask", description="defective_masks/<type>/<stem><suffix>.png")


class HFConfig(_Base):
    root: str = Field(description="a Hugging Face dataset name, or a folder written by save_to_disk")
    name: str | None = Field(None, description="the dataset's configuration name, if it has several")
    train_split: str = Field("train")
    test_split: str | None = Field(None, description="split used as test; none: no test samples")
    image_column: str = Field("image")
    caption_column: str | None = Field(None, description="e.g. caption or text; none: no captions")
    label_column: str | None = Field(None, description="0/1 or class-name column; none: every image is normal")
    limit: int | None = Field(None, ge=1, description="use only the first N rows of each split")


class SyntheticConfig(_Base):
    kind: Literal["mvtec", "neu", "captions"] = Field("mvtec", description="MVTec-like categories or NEU-like steel")
    category: str | list[str] | None = Field(
        None, description="mvtec: carpet, wood, leather, bottle, pill (none: all); neu/captions: steel"
    )
    size: int = Field(128, ge=32, le=1024, description="images are size x size pixels")
    n_train: int = Field(40, ge=1, description="mvtec: good training images per category; neu: images per class")
    n_test: int = Field(10, ge=1, description="mvtec: test images per defect type (and as many good); neu: per class")
    seed: int = Field(0, description="the same seed gives the same pixels on every machine")
