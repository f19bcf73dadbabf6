"""A cache of resized images for repeated epochs.

Decoding and resizing a PNG costs more than a small model's forward pass;
across epochs the same images are read again and again. The cache keeps the
resized uint8 pixels in memory, and optionally in ``.npy`` files so a resumed
or repeated run starts warm.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.data.sample import Sample
from defectkit.io import atomic_path


class ResizedImageCache:
    """``cache.image(sample)``: H×W×3 uint8 at ``size``; ``cache.mask(sample)``: H×W bool (nearest)."""

    def __init__(self, size: int | tuple[int, int], directory: str | Path | None = None) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.directory = Path(directory) if directory else None
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        self.hits = self.misses = 0

    def _key(self, sample: Sample, what: str) -> str:
        source = sample.image_path if what == "image" else sample.mask_path
        stamp = source.stat().st_mtime_ns if source is not None and source.exists() else 0
        return hashlib.sha1(f"{sample.id}|{what}|{self.size}|{stamp}".encode()).hexdigest()

    def _get(self, sample: Sample, what: str) -> np.ndarray | None:
        key = (sample.id, what)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.directory / f"{self._key(sample, what)}.npy" if self.directory else None
        if path is not None and path.exists():
            self.hits += 1
            value = np.load(path, allow_pickle=False)
        else:
            self.misses += 1
            value = self._compute(sample, what)
            if value is None:
                return None
            if path is not None:
                with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, value, allow_pickle=False)
        self._memory[key] = value
        return value

    def _compute(self, sample: Sample, what: str) -> np.ndarray | None:
        if what == "image":
            return np.asarray(sample.load_image().resize(self.size, Image.BILINEAR))
        mask = sample.load_mask()
        if mask is None:
            return None
        # nearest neighbour: a mask stays binary and its defect keeps its size
        return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(self.size, Image.NEAREST)) > 0

    def image(self, sample: Sample) -> np.ndarray:
        return self._get(sample, "image")

    def mask(self, sample: Sample) -> np.ndarray | None:
        return self._get(sample, "mask")
