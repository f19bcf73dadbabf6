"""ViT backbones exposing the CLS token and the patch tokens as a grid, whatever the prefix tokens are.

DINOv3 puts ``1 + num_register_tokens`` tokens before the patches (4 registers in the released ViTs, patch 16);
DINOv2 puts one (patch 14); timm models say how many in ``num_prefix_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from defectkit.errors import DefectkitError
from defectkit_dinov3.config import DINOv2BackboneConfig, DINOv3BackboneConfig, TimmBackboneConfig


@dataclass(frozen=True)
class BackboneSpec:
    """How to rebuild a backbone's architecture without its source (saved with every checkpoint)."""

    family: str  # dinov3, dinov2 or timm
    config: dict[str, Any]  # transformers config dict, or {"model": timm name}

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "config": self.config}


class PatchBackbone(nn.Module):
    """Wraps a ViT: ``forward(pixels) -> (cls [B, D], patches [B, D, H/p, W/p])``.

    Pixels are ImageNet-normalised already (the multi-task model normalises).
    """

    def __init__(self, model: nn.Module, spec: BackboneSpec, hidden_size: int, patch_size: int, prefix: int) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.num_prefix_tokens = prefix

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """The last layer's normalised tokens ``[B, prefix + N, D]``."""
        if self.spec.family == "timm":
            return self.model.forward_features(pixels)
        return self.model(pixel_values=pixels).last_hidden_state

    @torch.no_grad()
    def cls_attention(self, pixels: torch.Tensor) -> torch.Tensor:
        """The last layer's attention of the CLS token to each patch, averaged over heads: ``[B, H/p, W/p]``.

        DINO's attention maps (Caron et al. 2021). transformers returns attention weights only from its eager
        attention, so the model switches to it for this call; timm's fused attention never forms the matrix,
        so the last block computes it explicitly and its dropout's input is read (the softmax weights).
        """
        height, width = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
        if self.spec.family == "timm":
            attention = self.model.blocks[-1].attn
            captured: list[torch.Tensor] = []
            fused = getattr(attention, "fused_attn", False)
            attention.fused_attn = False
            hook = attention.attn_drop.register_forward_hook(lambda module, args, out: captured.append(args[0]))
            try:
                self.model.forward_features(pixels)
            finally:
                hook.remove()
                attention.fused_attn = fused
            weights = captured[-1]
        else:
            previous = self.model.config._attn_implementation
            self.model.set_attn_implementation("eager")
            try:
                weights = self.model(pixel_values=pixels, output_attentions=True).attentions[-1]
            finally:
                self.model.set_attn_implementation(previous)
        cls = weights[:, :, 0, self.num_prefix_tokens :].mean(dim=1)
        return cls.reshape(pixels.shape[0], height, width)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
        tokens = self.tokens(pixels)
        patches = tokens[:, self.num_prefix_tokens :]
        grid = patches.transpose(1, 2).reshape(tokens.shape[0], self.hidden_size, height, width)
        return tokens[:, 0], grid


def _hf_backbone(family: str, model_id: str | None, config: dict[str, Any] | None, revision: str | None):
    from transformers import AutoModel, Dinov2Config, Dinov2Model, DINOv3ViTConfig, DINOv3ViTModel

    config_class, model_class = {"dinov3": (DINOv3ViTConfig, DINOv3ViTModel), "dinov2": (Dinov2Config, Dinov2Model)}[
        family
    ]
    if config is not None:
        model = model_class(config_class(**config))
    else:
        try:
            model = AutoModel.from_pretrained(model_id, revision=revision)
        except OSError as exc:
            raise DefectkitError(
                f"{family} backbone: cannot load {model_id!r} ({str(exc).splitlines()[0]}); give a hub id you can "
                "reach (DINOv3 ids need the licence accepted on the hub and `hf auth login`), a local folder "
                "written by save_pretrained, or `config:` for random weights"
            ) from None
        if model.config.model_type != config_class.model_type:
            raise DefectkitError(
                f"{family} backbone: {model_id!r} is a {model.config.model_type!r} model, not "
                f"{config_class.model_type!r}; use the matching model_backend (dinov3, dinov2 or timm)"
            )
    hf_config = model.config
    # DINOv3ViTModel always returns the registers; Dinov2Model has none (Dinov2WithRegisters is another class)
    prefix = 1 + int(getattr(hf_config, "num_register_tokens", 0) or 0) if family == "dinov3" else 1
    spec = BackboneSpec(family, hf_config.to_diff_dict() | {"model_type": hf_config.model_type})
    return PatchBackbone(model, spec, hf_config.hidden_size, hf_config.patch_size, prefix)


def dinov3_backbone(config: DINOv3BackboneConfig) -> PatchBackbone:
    """The ``dinov3`` model_backend."""
    return _hf_backbone("dinov3", config.model, config.config, config.revision)


def dinov2_backbone(config: DINOv2BackboneConfig) -> PatchBackbone:
    """The ``dinov2`` model_backend."""
    return _hf_backbone("dinov2", config.model, config.config, config.revision)


def timm_backbone(config: TimmBackboneConfig) -> PatchBackbone:
    """The ``timm`` model_backend: any ViT-style timm model with ``num_prefix_tokens``."""
    import timm

    try:
        # dynamic_img_size lets one model take the recipe's image size (positional embeddings interpolated)
        model = timm.create_model(config.model, pretrained=config.pretrained, num_classes=0, dynamic_img_size=True)
    except (RuntimeError, TypeError) as exc:
        raise DefectkitError(f"timm backbone: cannot build {config.model!r} as a ViT ({exc})") from None
    if not hasattr(model, "num_prefix_tokens"):
        raise DefectkitError(f"timm backbone: {config.model!r} is not a ViT (no patch tokens); choose a vit_* model")
    patch = model.patch_embed.patch_size
    return PatchBackbone(
        model, BackboneSpec("timm", {"model": config.model}), model.num_features, int(patch[0]), model.num_prefix_tokens
    )


def build_from_spec(spec: dict[str, Any]) -> PatchBackbone:
    """The architecture a checkpoint was trained with, randomly initialised (its weights are loaded after)."""
    family, config = spec["family"], dict(spec["config"])
    if family == "timm":
        return timm_backbone(TimmBackboneConfig(model=config["model"]))
    config.pop("model_type", None)
    return _hf_backbone(family, None, config, None)
