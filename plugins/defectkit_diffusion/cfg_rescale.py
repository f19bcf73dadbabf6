"""CFG rescale (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", eq. 15-16)
for the diffusers pipelines whose ``__call__`` has no ``guidance_rescale`` (the ControlNet pipelines, SD3).

Written by hand because those pipelines combine the guided prediction inside their
loop with no hook between the combination and the scheduler step. A forward hook
on the denoiser sees both halves of the classifier-free-guidance batch
(``[uncond, cond]``, the order every Stable Diffusion pipeline uses) and replaces
the conditional half ``c`` by ``c'`` so that the pipeline's own combination
``u + g (c' - u)`` equals the rescaled prediction exactly::

    cfg    = u + g (c - u)
    target = phi * cfg * std(c) / std(cfg) + (1 - phi) * cfg      (diffusers' rescale_noise_cfg)
    c'     = u + (target - u) / g
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def rescaled(uncond, cond, guidance: float, rescale: float):
    """The guided prediction of ``uncond``/``cond`` with CFG rescale ``rescale`` (0: plain CFG)."""
    cfg = uncond + guidance * (cond - uncond)
    dims = list(range(1, cfg.ndim))
    std_cond = cond.std(dim=dims, keepdim=True)
    std_cfg = cfg.std(dim=dims, keepdim=True)
    return rescale * cfg * (std_cond / std_cfg) + (1.0 - rescale) * cfg


@contextmanager
def cfg_rescale_hook(denoiser: Any, guidance: float, rescale: float) -> Iterator[None]:
    """While active, the denoiser's outputs make a pipeline's plain CFG come out rescaled."""
    import torch

    if rescale <= 0 or guidance <= 1:  # pipelines skip guidance at g <= 1: nothing to rescale
        yield
        return

    def hook(module, args, output):
        sample = output[0] if isinstance(output, tuple) else output.sample
        if sample.shape[0] % 2:
            return output
        uncond, cond = sample.chunk(2)
        target = rescaled(uncond.float(), cond.float(), guidance, rescale)
        cond = (uncond.float() + (target - uncond.float()) / guidance).to(sample.dtype)
        new = torch.cat([uncond, cond])
        if isinstance(output, tuple):
            return (new, *output[1:])
        output.sample = new
        return output

    handle = denoiser.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
