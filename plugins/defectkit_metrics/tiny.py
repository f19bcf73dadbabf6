"""Offline stand-ins for the standard extractors, for tests and CPU-sized recipes (public: recipes and
other plugins' tests name them by import string, ``defectkit_metrics.tiny:tiny_features``).

Small random networks with fixed seeds: the metrics' machinery runs on them without a download, and
their figures are not comparable with those of Inception, AlexNet LPIPS or CLIP. Importing this module
imports no torch; each factory does.
"""

from __future__ import annotations


def tiny_features():
    """Images (N, 3, H, W) in [0, 1] -> (N, 8) features (FID, KID)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def tiny_pyramid():
    """Images -> two feature maps, for LPIPS with a custom backbone."""
    import torch
    from torch import nn

    class Pyramid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 8, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            first = torch.relu(self.a(x))
            return [first, torch.relu(self.b(first))]

    torch.manual_seed(0)
    return Pyramid()


def tiny_classifier():
    """Images -> logits over 5 classes, for the Inception Score."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(tiny_features(), nn.Linear(8, 5))
