"""Classifier-free-guided sampling of a :class:`~defectkit_text2image.model.TextToImage` model.

Written by hand rather than through a diffusers pipeline: no diffusers pipeline
pairs a text encoder with a pixel-space UNet (every text-to-image pipeline
expects a VAE). The loop is the standard one: the scheduler's ``step`` does the
update, whatever the prediction type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from defectkit_text2image.model import TextToImage


@contextlib.contextmanager
def cpu_threads(count: int | None, device) -> Iterator[None]:
    """Run with ``count`` torch threads when on the CPU; restore the number after."""
    if count is None or torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_scheduler(model: TextToImage, sampler: str, eta: float = 0.0):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = model.scheduler.config
    if sampler == "ddim":
        return DDIMScheduler.from_config(config)
    if sampler == "dpm":
        return DPMSolverMultistepScheduler.from_config(config)
    return DDPMScheduler.from_config(config)


@torch.no_grad()
def generate(
    model: TextToImage,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    sampler: str = "ddim",
    steps: int = 30,
    guidance: float = 4.0,
    eta: float = 0.0,
    batch_size: int = 64,
    device=None,
) -> np.ndarray:
    """Images for ``prompts``, as uint8 ``(N, H, W, 3)``; image i starts from noise seeded by ``seeds[i]``."""
    device = device or next(model.unet.parameters()).device
    scheduler = make_scheduler(model, sampler)
    size, channels = model.resolution, model.channels
    uncond = model.encode(model.tokenize([""], device))
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        chunk_seeds = list(seeds[start : start + batch_size])
        # per-image noise: an image does not depend on the batch it was drawn in
        x = torch.stack(
            [torch.randn(channels, size, size, generator=torch.Generator().manual_seed(int(s))) for s in chunk_seeds]
        ).to(device)
        text = model.encode(model.tokenize(chunk, device))
        if guidance != 1.0:
            text = torch.cat([uncond.expand(len(chunk), -1, -1), text])
        scheduler.set_timesteps(steps, device=device)
        x = x * scheduler.init_noise_sigma
        step_options = {"eta": eta} if sampler == "ddim" else {}
        generator = torch.Generator(device=device).manual_seed(int(chunk_seeds[0]))
        for t in scheduler.timesteps:
            inputs = scheduler.scale_model_input(torch.cat([x, x]) if guidance != 1.0 else x, t)
            prediction = model.unet(inputs, t, encoder_hidden_states=text).sample
            if guidance != 1.0:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + guidance * (conditional - unconditional)
            x = scheduler.step(prediction, t, x, generator=generator, **step_options).prev_sample
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        if channels == 1:
            pixels = np.repeat(pixels, 3, axis=3)
        out.append(pixels)
    return np.concatenate(out)


def grid(images: np.ndarray, rows: int) -> np.ndarray:
    """``images`` (N, H, W, 3) laid out in ``rows`` rows, with a 2-pixel white gap."""
    n, h, w, _ = images.shape
    cols = int(np.ceil(n / rows))
    sheet = np.full((rows * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = image
    return sheet
