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

    @property
    def is_normal(self) -> bool:
        return self.label == 0

    def load_image(self) -> Image.Image:
        """The image as RGB."""
        if self.loader is not None:
            return self.loader()[0].convert("RGB")
        from PIL import Image

        with Image.open(self.image_path) as img:
            return img.convert("RGB")

    def load_mask(self) -> np.ndarray | None:
        """The defect mask as a boolean H×W array; all False for a normal image; ``None`` if unknown."""
        import numpy as np

        if self.loader is not None:
            return self.loader()[1]
        if self.mask_path is not None:
            from PIL import Image

            with Image.open(self.mask_path) as img:
                return np.asarray(img.convert("L")) > 127
        if self.is_normal and self.image_path is not None:
            from PIL import Image

            with Image.open(self.image_path) as img:
                return np.zeros((img.height, img.width), dtype=bool)
        return None


@runtime_checkable
class DefectDataset(Protocol):
    """What a ``dataset`` component's factory returns."""

    def samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` (``train``, ``val`` or ``test``), in a deterministic order."""
        ...
