"""Options of the dataset formats (a recipe's ``data:`` block). Light: pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from defectkit.options import StrictOptions

OnError = Literal["raise", "warn"]


class _Base(StrictOptions):
    on_error: OnError = Field(
        "raise",
        description="raise: stop at the first problem with the data; warn: skip bad samples and report counts",
    )


class _OnDisk(_Base):
    root: str = Field(description="the dataset's folder")
    follow_symlinks: bool = Field(
        False, description="read files whose symlinks lead out of root (refused by default: nothing outside is read)"
    )

    #: the folder inside each category that marks it as one (``None``: the format has no categories)
    _category_marker: ClassVar[str | None] = None

    def check_paths(self) -> tuple[str, str] | None:
        """Look ahead without opening an image: the first problem as ``(key, message)``, or ``None``.

        ``defectkit validate`` calls this on every dataset config that has it, so
        a root or category that does not exist is refused before any model is
        loaded. A third-party dataset config may define the same method.
        """
        from defectkit.data.base import pick_categories
        from defectkit.errors import DataError

        root = Path(self.root).expanduser()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            return "root", f"{root} {what}; point it at the dataset with --set data.root=DIR"
        category = getattr(self, "category", None)
        if self._category_marker is not None and category is not None:
            try:
                pick_categories(root, category, self._category_marker)
            except DataError as exc:
                return "category", str(exc)
        return None


class MVTecConfig(_OnDisk):
    _category_marker: ClassVar[str | None] = "test"
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
    _category_marker: ClassVar[str | None] = "train/defective"
    category: str | list[str] | None = Field(None, description="object folder(s) under root; none: all")
    mask_suffix: str = Field("_mask", description="defective_masks/<type>/<stem><suffix>.png")


#: presets of the ``hf`` format: a dataset and its columns, so a recipe names only the preset
HF_PRESETS: dict[str, dict[str, str]] = {
    # COCO captions as lmms-lab publishes them: the image, and its five captions as a list in `answer`
    "coco": {"root": "lmms-lab/COCO-Caption", "train_split": "val", "image_column": "image", "caption_column": "answer"},
}


class HFConfig(_Base):
    root: str | None = Field(
        None, description="a Hugging Face dataset name, or a folder written by save_to_disk (default: the preset's)"
    )
    preset: Literal["coco"] | None = Field(
        None,
        description="coco: lmms-lab/COCO-Caption with its image and five-caption columns; options set here win",
    )
    name: str | None = Field(None, description="the dataset's configuration name, if it has several")
    train_split: str = Field("train")
    test_split: str | None = Field(None, description="split used as test; none: no test samples")
    image_column: str = Field("image")
    caption_column: str | None = Field(
        None, description="e.g. caption or text, or a column of caption lists (one is drawn per epoch); none: no captions"
    )
    label_column: str | None = Field(None, description="0/1 or class-name column; none: every image is normal")
    limit: int | None = Field(None, ge=1, description="use only the first N rows of each split")

    @model_validator(mode="after")
    def _preset(self) -> HFConfig:
        for key, value in HF_PRESETS.get(self.preset or "", {}).items():
            if key not in self.model_fields_set:
                setattr(self, key, value)
        if self.root is None:
            raise ValueError("root: name a Hugging Face dataset or a save_to_disk folder, or set with.preset: coco")
        return self


class SyntheticConfig(_Base):
    kind: Literal["mvtec", "neu", "captions"] = Field("mvtec", description="MVTec-like categories or NEU-like steel")
    category: str | list[str] | None = Field(
        None, description="mvtec: carpet, wood, leather, bottle, pill (none: all); neu/captions: steel"
    )
    size: int = Field(128, ge=32, le=1024, description="images are size x size pixels")
    n_train: int = Field(40, ge=1, description="mvtec: good training images per category; neu: images per class")
    n_test: int = Field(10, ge=1, description="mvtec: test images per defect type (and as many good); neu: per class")
    seed: int = Field(0, description="the same seed gives the same pixels on every machine")
