"""DefectFill's three loss terms and the random box masks of the object loss.

All work at latent resolution: a pixel mask is brought there with
:func:`latent_mask` (area average, so a one-pixel scratch keeps its share of a
latent cell instead of vanishing as nearest-neighbour sampling would make it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A ``[B, 1, H, W]`` pixel mask (0/1) as the share of each latent cell it covers, ``[B, 1, h, w]``."""
    return F.interpolate(mask.float(), size=size, mode="area")


def _squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction.float() - target.float()).pow(2)


def defect_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean(M * (eps - eps_theta)^2)``: only the defect region of the real defect image teaches the token.

    ``mask`` is ``[B, 1, h, w]`` at latent resolution; the mean runs over every element.
    """
    return (mask * _squared_error(prediction, target)).mean()


def object_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """``mean((M + alpha (1 - M)) * (eps - eps_theta)^2)``: the whole image counts, the defect most.

    ``mask`` is the real defect mask (not the random boxes the input was masked with), at latent resolution.
    """
    weight = mask + alpha * (1.0 - mask)
    return (weight * _squared_error(prediction, target)).mean()


def attention_loss(attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean((A - M)^2)`` between the ``[B, h, w]`` cross-attention map of [V*] and the latent mask."""
    return (attention.float() - mask.reshape(attention.shape).float()).pow(2).mean()


def random_boxes(
    count: int,
    size: int,
    box_size: tuple[float, float],
    max_boxes: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``count`` masks ``[count, 1, size, size]`` of 1 to ``max_boxes`` axis-aligned boxes each.

    Box sides are drawn uniformly in ``box_size`` (shares of ``size``); every draw comes from ``generator``,
    so a resumed run repeats them.
    """
    masks = torch.zeros(count, 1, size, size)
    low, high = box_size
    for i in range(count):
        boxes = int(torch.randint(1, max_boxes + 1, (1,), generator=generator))
        for _ in range(boxes):
            sides = (low + (high - low) * torch.rand(2, generator=generator)) * size
            h, w = (max(1, int(round(float(s)))) for s in sides)
            top = int(torch.randint(0, size - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - w + 1, (1,), generator=generator))
            masks[i, 0, top : top + h, left : left + w] = 1.0
    return masks
