"""Training augmentations applied identically to an image and its mask.

Parameters are drawn once per sample; geometric transforms move the image and the mask together (the mask with
nearest-neighbour interpolation, so it stays binary), photometric ones (colour, noise, blur) touch the image only.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from defectkit_dinov3.config import AugmentConfig


class PairedAugment:
    """``augment(image [3, H, W] float in [0, 1], mask [1, H, W] float) -> (image, mask)``."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.config

        def chance(p: float) -> bool:
            return p > 0 and float(torch.rand((), generator=generator)) < p

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        image, mask = self._crop(image, mask, uniform)
        if chance(config.hflip):
            image, mask = image.flip(-1), mask.flip(-1)
        if chance(config.vflip):
            image, mask = image.flip(-2), mask.flip(-2)
        if config.rot90:
            turns = int(torch.randint(0, 4, (), generator=generator))
            image, mask = image.rot90(turns, (-2, -1)), mask.rot90(turns, (-2, -1))

        if config.brightness:
            image = F.adjust_brightness(image, uniform(1 - config.brightness, 1 + config.brightness))
        if config.contrast:
            image = F.adjust_contrast(image, uniform(1 - config.contrast, 1 + config.contrast))
        if config.saturation:
            image = F.adjust_saturation(image, uniform(1 - config.saturation, 1 + config.saturation))
        if chance(config.blur):
            image = F.gaussian_blur(image, kernel_size=[5, 5], sigma=[uniform(0.1, 1.5)] * 2)
        if config.noise_std:
            noise = torch.randn(image.shape, generator=generator) * uniform(0, config.noise_std)
            image = image + noise
        return image.clamp(0, 1), mask

    def _crop(self, image: torch.Tensor, mask: torch.Tensor, uniform) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.config.crop_scale
        if low >= 1.0:
            return image, mask
        height, width = image.shape[-2:]
        side = math.sqrt(uniform(low, min(high, 1.0)))
        crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
        top, left = round(uniform(0, height - crop_h)), round(uniform(0, width - crop_w))
        image = F.resized_crop(image, top, left, crop_h, crop_w, [height, width], InterpolationMode.BILINEAR)
        mask = F.resized_crop(mask, top, left, crop_h, crop_w, [height, width], InterpolationMode.NEAREST)
        return image, mask
