"""Deviation diffusion: a cosine schedule, the training corruption, and DDIM deviation correction.

The forward process leaves normal regions untouched and adds a deviation only
where patches are masked: ``x_t = x_0 + d`` with ``d = sqrt(1 - abar_t) * eps``
on noised patches and ``d = shuffled - x_0`` on patches given another patch's
content. The UNet predicts ``d`` (deviation prediction). Sampling starts from
the clean latent of the test image at ``start_t`` and removes the predicted
deviation over a few DDIM steps (eta = 0), so a perfectly normal input comes
back unchanged and only anomalous regions move.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch

#: a model call: (latent, timesteps, classes) -> deviation, or a UNetOutput with return_gate
DeviationModel = Callable[..., object]


def cosine_alphas_cumprod(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """``abar_t`` for ``t = 0 .. steps-1`` of the improved-DDPM cosine schedule (float64)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)


def _upsample_cells(cells: torch.Tensor, rows: int, cols: int, size: int) -> torch.Tensor:
    return cells.view(rows, cols).repeat_interleave(size, 0).repeat_interleave(size, 1).float()


def patch_masks(
    shape: tuple[int, int, int],
    mask_ratio_max: float,
    patch_sizes: Sequence[int],
    shuffle_share: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: a patch size, a ratio from U(0, mask_ratio_max), the noised and shuffled patch masks.

    Returns ``noise_mask [B, 1, H, W]``, ``shuffle_mask [B, 1, H, W]`` (disjoint, 0/1 floats) and
    ``source [B, H*W]``: for every position, the flat position its shuffled content comes from.
    """
    batch, height, width = shape
    noise = torch.zeros(batch, 1, height, width)
    shuffle = torch.zeros(batch, 1, height, width)
    source = torch.arange(height * width).repeat(batch, 1)
    rng = random.Random(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    for b in range(batch):
        size = rng.choice([p for p in patch_sizes if height % p == 0 and width % p == 0] or [1])
        gh, gw = height // size, width // size
        ratio = rng.uniform(0.0, mask_ratio_max)
        masked = torch.rand(gh * gw, generator=generator) < ratio
        shuffled = masked & (torch.rand(gh * gw, generator=generator) < shuffle_share)
        noise[b, 0] = _upsample_cells(masked & ~shuffled, gh, gw, size)
        shuffle[b, 0] = _upsample_cells(shuffled, gh, gw, size)
        # patch-level permutation: a shuffled patch takes a whole other patch, keeping its texture coherent
        perm = torch.randperm(gh * gw, generator=generator)
        cells = torch.arange(height * width).view(gh, size, gw, size).permute(0, 2, 1, 3).reshape(gh * gw, -1)
        moved = cells[perm]
        flat = source[b].clone()
        flat[cells.flatten()] = moved.flatten()
        source[b] = flat
    return noise.to(device), shuffle.to(device), source.to(device)


def corrupt(
    x0: torch.Tensor,
    t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    noise_mask: torch.Tensor,
    shuffle_mask: torch.Tensor,
    source: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training input ``x_t`` and its deviation target ``x_t - x_0``."""
    batch, channels = x0.shape[:2]
    sigma = (1 - alphas_cumprod.to(x0.device)[t]).sqrt().float().view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    flat = x0.flatten(2)
    shuffled = torch.gather(flat, 2, source[:, None, :].expand(batch, channels, -1)).view_as(x0)
    deviation = noise_mask * sigma * eps + shuffle_mask * (shuffled - x0)
    return x0 + deviation, deviation


def sampling_timesteps(start_t: int, steps: int) -> list[int]:
    """Descending timesteps from ``start_t - 1`` to 0, ``steps`` of them where the range allows."""
    points = torch.linspace(start_t - 1, 0, max(steps, 1)).round().long().tolist()
    return list(dict.fromkeys(points))


@torch.no_grad()
def ddim_deviation_sample(
    model: DeviationModel,
    latent: torch.Tensor,
    classes: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    start_t: int,
    steps: int,
    return_gate: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Correct the clean ``latent`` towards normality; returns it and the DoD gate of the first step.

    Each step predicts the deviation ``d``, estimates ``x0 = x - d`` and, as DDIM
    with eta = 0, keeps the share ``sqrt(1 - abar_next) / sqrt(1 - abar_t)`` of
    the deviation for the next, smaller timestep.
    """
    sigmas = (1 - alphas_cumprod).sqrt().float().tolist()
    timesteps = sampling_timesteps(start_t, steps)
    x, gate = latent, None
    for i, t in enumerate(timesteps):
        tt = torch.full((latent.shape[0],), t, device=latent.device, dtype=torch.long)
        if return_gate and i == 0:
            output = model(x, tt, classes, return_gate=True)
            deviation, gate = output.deviation, output.dod_gate
        else:
            deviation = model(x, tt, classes)
        deviation = deviation.to(x.dtype)
        x0 = x - deviation
        if i + 1 < len(timesteps):
            x = x0 + deviation * (sigmas[timesteps[i + 1]] / sigmas[t])
        else:
            x = x0
    return x, gate
