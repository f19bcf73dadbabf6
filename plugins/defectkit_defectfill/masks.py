"""Masks for generation: shapes of the real defect masks, random shapes, or a folder of masks.

Every draw comes from a ``numpy.random.Generator`` seeded per image, so an image's mask is a function of
its seed. Masks are boolean ``(H, W)`` arrays at the good image's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.data.base import IMAGE_SUFFIXES
from defectkit.errors import DataError


def _bbox(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``(width, height)``."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image) > 127


def place_shape(shape: np.ndarray, size: tuple[int, int], rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """``shape`` (its non-empty box), scaled, turned by a multiple of 90 degrees, maybe flipped, at a random place
    of an empty ``(width, height)`` mask; a shape larger than the image is shrunk to fit."""
    width, height = size
    piece = np.rot90(_bbox(shape), k=int(rng.integers(4)))
    if rng.random() < 0.5:
        piece = piece[:, ::-1]
    h, w = piece.shape
    fit = min(scale, width / w, height / h)
    new = (max(1, round(w * fit)), max(1, round(h * fit)))
    if new != (w, h):
        piece = _resize(piece, new)
        if not piece.any():  # a thin shape shrunk to nothing: keep one pixel
            piece = np.ones((1, 1), dtype=bool)
    h, w = piece.shape
    top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
    out = np.zeros((height, width), dtype=bool)
    out[top : top + h, left : left + w] = piece
    return out


def random_shape(size: tuple[int, int], share: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A rotated ellipse or box with sides drawn in ``share`` of the image side, at a random place."""
    width, height = size
    side = min(width, height)
    a, b = (rng.uniform(*share) * side / 2 for _ in range(2))
    angle = rng.uniform(0, np.pi)
    reach = max(a, b)
    cx = rng.uniform(min(reach, width / 2), max(width - reach, width / 2))
    cy = rng.uniform(min(reach, height / 2), max(height - reach, height / 2))
    y, x = np.mgrid[0:height, 0:width] + 0.5
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    if rng.random() < 0.5:
        mask = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    else:
        mask = (np.abs(u) <= a) & (np.abs(v) <= b)
    if not mask.any():
        mask[int(min(cy, height - 1)), int(min(cx, width - 1))] = True
    return mask


def read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"))
    except OSError as exc:
        raise DataError(f"{path}: cannot be read as a mask image ({exc})") from None
    mask = array > 127
    if not mask.any():
        raise DataError(f"{path}: an empty mask (no pixel above 127); white marks where the defect goes")
    return mask


class MaskSource:
    """Draws the mask of one generated image (one shape per defect type of the image, united)."""

    def __init__(self, options, samples_of_split=None) -> None:
        self.options = options
        self.shapes: dict[str, list[tuple[np.ndarray, tuple[int, int]]]] = {}  # type -> (mask, image size)
        self.files: list[Path] = []
        if options.source == "real":
            for sample in samples_of_split or []:
                mask = sample.load_mask() if sample.label == 1 else None
                if mask is not None and np.any(mask):
                    self.shapes.setdefault(sample.defect_type, []).append(
                        (np.asarray(mask) > 0, sample.load_image().size)
                    )
        elif options.source == "folder":
            folder = Path(options.folder).expanduser()
            if not folder.is_dir():
                raise DataError(f"mask.folder: {folder} is not a folder")
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise DataError(f"mask.folder: {folder} holds no mask image ({', '.join(IMAGE_SUFFIXES)})")

    def check(self, defect_types: list[str]) -> None:
        if self.options.source != "real":
            return
        missing = [t for t in defect_types if t not in self.shapes]
        if missing:
            raise DataError(
                f"mask.source real: split {self.options.split!r} has no mask of {', '.join(missing)} "
                f"(it has {', '.join(sorted(self.shapes)) or 'none'}); use mask.source random or folder"
            )

    def draw(self, defect_types: list[str], size: tuple[int, int], number: int, rng: np.random.Generator) -> np.ndarray:
        """The mask of image ``number`` (a counter over the images of a type) at ``size`` = (width, height)."""
        options = self.options
        width, height = size
        if options.source == "folder":
            mask = _resize(read_mask(self.files[number % len(self.files)]), size)
        else:
            mask = np.zeros((height, width), dtype=bool)
            for defect in defect_types:
                if options.source == "real":
                    pool = self.shapes[defect]
                    shape, (real_width, _) = pool[int(rng.integers(len(pool)))]
                    # shapes keep their size relative to the image they came from
                    mask |= place_shape(shape, size, rng, scale=width / real_width)
                else:
                    mask |= random_shape(size, options.size, rng)
        if options.dilate:
            from scipy.ndimage import binary_dilation

            mask = binary_dilation(mask, iterations=options.dilate)
        return mask
