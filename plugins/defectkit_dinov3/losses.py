"""Losses and task weighting of the multi-task model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class focal loss (Lin et al.); ``gamma=0`` is exactly cross-entropy.

    The modulating factor uses the true-class probability, so label smoothing and
    class weights act as in :func:`torch.nn.functional.cross_entropy`.
    """
    per_sample = F.cross_entropy(logits, target, weight=weight, reduction="none", label_smoothing=label_smoothing)
    if gamma:
        p_true = logits.softmax(dim=1).gather(1, target[:, None]).squeeze(1)
        per_sample = (1 - p_true).pow(gamma) * per_sample
    if weight is None:
        return per_sample.mean()
    # normalise as cross_entropy(reduction="mean") does with weights, so gamma=0 matches it exactly
    return per_sample.sum() / weight[target].sum()


def dice_loss(probabilities: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per image ``[B]``; identical masks give 0, an empty mask predicted empty too."""
    dims = tuple(range(1, probabilities.dim()))
    intersection = (probabilities * target).sum(dims)
    total = probabilities.sum(dims) + target.sum(dims)
    return 1 - (2 * intersection + smooth) / (total + smooth)


def segmentation_loss(mask_logits: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
    """Dice + BCE over the images that have a mask; 0 (with a gradient path) when none has one.

    Images without masks still train the classifier: they are only left out here.
    """
    if not bool(has_mask.any()):
        return mask_logits.sum() * 0.0
    logits, target = mask_logits[has_mask], masks[has_mask]
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + dice_loss(logits.sigmoid(), target).mean()


class DynamicWeights:
    """The seed's schedule: classification 0.5 then 1.0, segmentation 1.0 then 0.3, switching at an epoch.

    Locating the defect first and classifying it afterwards: the mask loss leads early, the class loss later.
    """

    def __init__(
        self,
        switch_epoch: int,
        classification: tuple[float, float] = (0.5, 1.0),
        segmentation: tuple[float, float] = (1.0, 0.3),
    ) -> None:
        self.switch_epoch = switch_epoch
        self.classification = classification
        self.segmentation = segmentation

    def weights(self, epoch: int) -> tuple[float, float]:
        """(classification, segmentation) weights for a 0-based epoch counted over all stages."""
        after = int(epoch >= self.switch_epoch)
        return self.classification[after], self.segmentation[after]

    def combine(self, classification: torch.Tensor, segmentation: torch.Tensor, epoch: int) -> torch.Tensor:
        cls_weight, seg_weight = self.weights(epoch)
        return cls_weight * classification + seg_weight * segmentation


class UncertaintyWeights(nn.Module):
    """Kendall, Gal & Cipolla (2018): ``sum_i exp(-s_i) L_i + s_i`` with learned ``s_i = log sigma_i^2``.

    A task whose loss stays high (noisy) gets a larger ``s_i`` and so a smaller weight; the ``+ s_i``
    term stops every weight from going to zero.
    """

    def __init__(self, tasks: int = 2) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(tasks))

    def combine(self, classification: torch.Tensor, segmentation: torch.Tensor, epoch: int) -> torch.Tensor:
        losses = torch.stack([classification, segmentation])
        return (torch.exp(-self.log_vars) * losses + self.log_vars).sum()

    def weights(self, epoch: int) -> tuple[float, float]:
        cls_weight, seg_weight = torch.exp(-self.log_vars.detach()).tolist()
        return cls_weight, seg_weight


def class_weights(counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes present (absent classes get 0)."""
    counts_t = torch.tensor(counts, dtype=torch.float32)
    weights = torch.where(counts_t > 0, 1.0 / counts_t.clamp(min=1), torch.zeros_like(counts_t))
    return weights * (counts_t > 0).sum() / weights.sum()
