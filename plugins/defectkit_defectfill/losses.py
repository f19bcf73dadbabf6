"""DefectFill's three loss terms, the optional extension terms of seed 001 §11, and the random box masks.

The paper's terms work at latent resolution: a pixel mask is brought there with
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


def attention_consistency_loss(scales: list[torch.Tensor]) -> torch.Tensor:
    """Multi-scale attention consistency: ``mean_s mean((A_s - mean_s A_s)^2)`` over the decoder resolutions.

    ``scales`` holds the [V*] map of each resolution, every one ``[B, h, w]`` at latent size: the term is the
    maps' variance across resolutions, zero when the coarse and the fine layers look at the same place.
    """
    if len(scales) < 2:
        raise ValueError("attention consistency compares two or more resolutions; got one")
    stacked = torch.stack([s.float() for s in scales])
    return (stacked - stacked.mean(0, keepdim=True)).pow(2).mean()


def predicted_clean_latents(
    noisy: torch.Tensor, prediction: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The one-step estimate of the clean latents from the UNet's ``epsilon`` or ``v_prediction`` output."""
    abar = alphas_cumprod.reshape(-1, 1, 1, 1).to(noisy.device, torch.float32)
    noisy, prediction = noisy.float(), prediction.float()
    if prediction_type == "v_prediction":
        return abar.sqrt() * noisy - (1.0 - abar).sqrt() * prediction
    if prediction_type != "epsilon":
        raise ValueError(f"perceptual loss: prediction_type {prediction_type!r} is neither epsilon nor v_prediction")
    return (noisy - (1.0 - abar).sqrt() * prediction) / abar.sqrt()


def perceptual_loss(
    estimate: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, distance
) -> torch.Tensor:
    """``mean_b w_b LPIPS(M x0_b + (1 - M) x_b, x_b)``: how the estimated defect region differs perceptually.

    ``estimate`` and ``real`` are ``[B, 3, H, W]`` images in ``[-1, 1]`` (the decoded one-step estimate and the
    training image), ``mask`` the ``[B, 1, H, W]`` pixel defect mask; outside it the real pixels are put in, so
    the distance speaks about the defect and its border only. ``weight`` (``[B]``) is each sample's signal share
    ``alpha_bar_t``: at a noisy timestep the one-step estimate is a blur and should teach little. ``distance``
    takes two ``[0, 1]`` batches and returns one distance per pair (``lpips_distance``).
    """
    composite = mask * estimate.float() + (1.0 - mask) * real.float()
    values = distance(((composite + 1.0) / 2.0).clamp(0, 1), ((real.float() + 1.0) / 2.0).clamp(0, 1))
    return (weight.to(values.device, values.dtype) * values.flatten()).mean()


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
