"""Samples -> tensors: resized images, masks where known (exact, or coarse boxes from the data layer), labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from defectkit.data import Sample
from defectkit_dinov3.augment import PairedAugment


def load_image(sample: Sample, size: int) -> torch.Tensor:
    """``uint8 [3, size, size]``."""
    image = sample.load_image().resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def load_mask(sample: Sample, size: int) -> torch.Tensor | None:
    """``bool [1, size, size]`` (nearest neighbour keeps it binary), or ``None`` when the sample has no mask.

    NEU-DET style boxes arrive here already as coarse box masks (``Sample.load_mask``): weak supervision.
    """
    mask = sample.load_mask()
    if mask is None:
        return None
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(image) > 127)[None]


class DefectDataset(Dataset):
    """``(image float [3,S,S] in [0,1], mask float [1,S,S], has_mask, class index, defect label)``.

    Images without a mask get an all-zero mask and ``has_mask=False``: they train the classifier only.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        classes: Sequence[str],
        size: int,
        augment: PairedAugment | None = None,
        cache: bool = True,
    ) -> None:
        self.samples = list(samples)
        self.index = {name: i for i, name in enumerate(classes)}
        self.size = size
        self.augment = augment
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] | None = {} if cache else None
        #: CAM pseudo-masks by sample index, for samples without a mask of their own
        self.pseudo_masks: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample ``i`` un-augmented: ``uint8 [3, S, S]`` and its own mask ``bool [1, S, S]`` or ``None``."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        loaded = load_image(self.samples[i], self.size), load_mask(self.samples[i], self.size)
        if self._cache is not None:
            self._cache[i] = loaded
        return loaded

    def without_mask(self) -> list[int]:
        """Indices of defective samples that have no mask of their own (candidates for pseudo-masks)."""
        return [i for i, s in enumerate(self.samples) if s.label == 1 and self.load(i)[1] is None]

    def __getitem__(self, i: int):
        sample = self.samples[i]
        image_u8, mask_b = self.load(i)
        image = image_u8.float() / 255.0
        if mask_b is None:
            mask_b = self.pseudo_masks.get(i)
        has_mask = mask_b is not None
        mask = mask_b.float() if has_mask else torch.zeros(1, self.size, self.size)
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        return image, mask, has_mask, self.index.get(sample.defect_type, -1), float(sample.label)
