"""Optimizers (AdamW, fused AdamW, bitsandbytes 8-bit AdamW) and learning-rate schedules."""

from __future__ import annotations

import torch

from defectkit.errors import DefectkitError
from defectkit_finetune.config import FinetuneConfig


def build_optimizer(groups: list[dict], config: FinetuneConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over parameter ``groups`` (each with its own ``lr``)."""
    kwargs = {
        "betas": (config.adam_beta1, config.adam_beta2),
        "eps": config.adam_epsilon,
        "weight_decay": config.weight_decay,
    }
    if config.optimizer == "adamw_8bit":
        return _adamw_8bit(groups, kwargs, device)
    if config.optimizer == "adamw_fused":
        # one kernel over every parameter instead of a loop of small ones
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    return torch.optim.AdamW(groups, foreach=device.type == "cuda", **kwargs)


def _adamw_8bit(groups, kwargs, device):
    # imported only when asked for: bitsandbytes is large and probes the GPU on import
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise DefectkitError(
            f"optimizer: adamw_8bit needs bitsandbytes ({exc}); pip install 'bitsandbytes>=0.45' or use adamw"
        ) from None
    from packaging.version import Version

    if device.type == "cpu" and Version(bnb.__version__) < Version("0.45"):
        raise DefectkitError(
            f"optimizer: adamw_8bit on the CPU needs bitsandbytes>=0.45 (installed {bnb.__version__}); "
            "upgrade it, train on a GPU, or use adamw"
        )
    return bnb.optim.AdamW8bit(groups, **kwargs)


def build_lr_scheduler(optimizer, config: FinetuneConfig):
    """The schedule, stepped once per optimizer step (not per process: see the trainer)."""
    if config.lr_scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=config.steps,
            pct_start=config.onecycle_pct_start,
            anneal_strategy="cos",
            # the betas stay as configured: 8-bit AdamW and fused AdamW read them per step too
            cycle_momentum=False,
        )
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps
    )
