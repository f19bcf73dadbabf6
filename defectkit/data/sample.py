"""One sample type across formats (MVTec AD, VisA, NEU-DET, folders, synthetic).

Samples are light records; pixels are read only by :meth:`Sample.load_image`
and :meth:`Sample.load_mask`, so listing a dataset of 10,000 images is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

NORMAL = "good"


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates (x0, y0 inclusive; x1, y1 exclusive)."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = ""


@dataclass(frozen=True)
class Sample:
    """One image with whatever annotation its format has.

    Attributes:
        id: unique within the dataset and stable across runs (a relative path).
        split: ``train``, ``val`` or ``test``.
        label: 0 normal, 1 defective.
        defect_type: ``"good"`` for normal samples, else the defect class.
        object_class: the category (``bottle``, ``steel``); ``""`` if the format has none.
        caption: a text description, where the format has one.
        captions: every description where the format has several (COCO's five); ``caption`` is the first.
        boxes: defect boxes (NEU-DET), else empty.
        image_path / mask_path: files on disk, or ``None`` for generated samples.
        loader: for generated samples, returns ``(image, mask_or_None)``.
    """

    id: str
    split: str
    label: int
    defect_type: str = NORMAL
    object_class: str = ""
    caption: str | None = None
    boxes: tuple[Box, ...] = ()
    image_path: Path | None = None
    mask_path: Path | None = None
    loader: Callable[[], tuple[Image.Image, np.ndarray | None]] | None = field(default=None, compare=False, repr=False)
    captions: tuple[str, ...] = ()

    @property
    def is_normal(self) -> bool:
        return self.label == 0

    def load_image(self) -> Image.Image:
        """The image as RGB; a file that cannot be decoded raises a DataError naming it."""
        if self.loader is not None:
            from defectkit.data.pixels import to_rgb

            return to_rgb(self.loader()[0], where=self.id)
        return read_image(self.image_path)

    def load_mask(self) -> np.ndarray | None:
        """The defect mask as a boolean H×W array; all False for a normal image; ``None`` if unknown."""
        import numpy as np

        if self.loader is not None:
            return self.loader()[1]
        if self.mask_path is not None:
            return read_mask(self.mask_path)
        if self.is_normal and self.image_path is not None:
            width, height = image_size(self.image_path)
            return np.zeros((height, width), dtype=bool)
        return None


def read_image(path: Path) -> Image.Image:
    """Decode an image file to 8-bit RGB at its real brightness (any bit depth and mode), or raise a
    one-line DataError that names it; see :mod:`defectkit.data.pixels`."""
    from defectkit.data.pixels import decode_image

    return decode_image(path).image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    from defectkit.errors import DataError

    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); re-export it or remove it from the dataset") from None


def read_mask(path: Path) -> np.ndarray:
    """A binary mask file as a boolean array (any non-zero value is defect).

    A mask with more than two grey levels (anti-aliased, JPEG-compressed,
    resized with interpolation) is rejected: thresholding it would silently
    move the defect boundary the metrics are computed on.
    """
    import numpy as np

    from defectkit.errors import DataError

    values = np.asarray(read_image(path).convert("L"))
    levels = np.unique(values)
    if len(levels) > 2 or (len(levels) == 2 and levels[0] != 0):
        shown = ", ".join(str(v) for v in levels[:6]) + (" ..." if len(levels) > 6 else "")
        raise DataError(
            f"{path}: mask is not binary ({len(levels)} grey levels: {shown}); "
            "save masks as PNG with 0 for background and 255 for defect"
        )
    return values > 0


@runtime_checkable
class DefectDataset(Protocol):
    """What a ``dataset`` component's factory returns."""

    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` (``train``, ``val`` or ``test``), in a deterministic order."""
        ...
