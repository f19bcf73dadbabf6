"""The multi-task defect model: ViT patch tokens -> segmentation decoder -> mask-guided attention pooling -> heads."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from defectkit_dinov3.backbone import PatchBackbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MultiTaskOutput(NamedTuple):
    """What one forward pass gives (a tuple, so it exports to ONNX as four outputs)."""

    class_logits: torch.Tensor  # [B, C] defect types (and "good" where the data has normal images)
    defect_logit: torch.Tensor  # [B] normal (< 0) versus defect (> 0)
    mask_logits: torch.Tensor  # [B, 1, H, W] at the input resolution
    attention: torch.Tensor  # [B, H/p, W/p] pooling weights over the patches, summing to 1


class SegmentationDecoder(nn.Module):
    """A light decoder: project the patch grid, two conv blocks each upsampling x2, a 1-channel logit map."""

    upsampling = 4

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.GroupNorm(8, channels), nn.GELU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.GELU())
            for _ in range(2)
        )
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        x = self.project(grid)
        for block in self.blocks:
            x = block(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.head(x)


class MultiTaskDefectModel(nn.Module):
    """Seed 002's design: the predicted defect mask tells the classifier where to look.

    The decoder's logits, averaged onto the patch grid, become softmax attention weights over the patch
    tokens; the attention-pooled tokens, the CLS token and the mean patch token feed the binary
    (normal/defect) and the multi-class head. On a normal image the mask is flat and the attention
    spreads out, which is the mean token again. Input: RGB in [0, 1]; normalisation happens inside, so an
    exported model takes plain pixels.
    """

    def __init__(self, backbone: PatchBackbone, num_classes: int, decoder_channels: int = 128, dropout: float = 0.2):
        super().__init__()
        self.backbone = backbone
        width = backbone.hidden_size
        self.decoder = SegmentationDecoder(width, decoder_channels)
        self.norm = nn.LayerNorm(3 * width)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(3 * width, num_classes)
        self.defect_head = nn.Linear(3 * width, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> MultiTaskOutput:
        cls_token, grid = self.backbone((images - self.mean) / self.std)
        batch, width, height, breadth = grid.shape
        mask_logits = self.decoder(grid)
        # the decoder upsamples x4: a fixed pooling kernel brings it back onto the patch grid (and exports to ONNX)
        grid_logits = F.avg_pool2d(mask_logits, SegmentationDecoder.upsampling).flatten(1)
        attention = grid_logits.softmax(dim=1)
        tokens = grid.flatten(2)  # [B, D, N]
        pooled = torch.einsum("bdn,bn->bd", tokens, attention)
        features = self.dropout(self.norm(torch.cat([cls_token, pooled, tokens.mean(2)], dim=1)))
        mask_logits = F.interpolate(mask_logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return MultiTaskOutput(
            self.classifier(features),
            self.defect_head(features).squeeze(1),
            mask_logits,
            attention.view(batch, height, breadth),
        )

    @torch.no_grad()
    def class_activation_map(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """CAM (Zhou et al. 2016) of ``classes [B]``: ``[B, H, W]`` in [0, 1] at the input resolution.

        The class's head weights for the mean and the attention-pooled token (times the LayerNorm gain)
        are linear in each patch token, so their dot product with a token is that patch's evidence for
        the class; the LayerNorm's per-image centring and scaling vanish in the min-max normalisation.
        """
        _, grid = self.backbone((images - self.mean) / self.std)
        width = grid.shape[1]
        weights = self.classifier.weight[classes] * self.norm.weight  # [B, 3D]
        per_patch = weights[:, width : 2 * width] + weights[:, 2 * width :]
        cam = torch.einsum("bdhw,bd->bhw", grid, per_patch)
        low = cam.flatten(1).min(1).values.view(-1, 1, 1)
        high = cam.flatten(1).max(1).values.view(-1, 1, 1)
        cam = (cam - low) / (high - low).clamp(min=1e-8)
        return F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    @torch.no_grad()
    def attention_map(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's CLS-to-patch attention ``[B, H, W]`` in [0, 1] at the input resolution."""
        attention = self.backbone.cls_attention((images - self.mean) / self.std)
        low = attention.flatten(1).min(1).values.view(-1, 1, 1)
        high = attention.flatten(1).max(1).values.view(-1, 1, 1)
        attention = (attention - low) / (high - low).clamp(min=1e-8)
        return F.interpolate(attention[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze (stage 1) or unfreeze (fine-tuning) the backbone."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(trainable)
