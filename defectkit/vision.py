"""Small vision pieces the comparison loops and metrics share (public: plugins use them; imports torch).

A CPU-sized classifier trained in seconds, and a uint8 image batch, used by ``augment_compare`` and the
``classification_accuracy_score`` metric alike, so both measure with the same network.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from defectkit.data.sample import Sample


def small_cnn(classes: int) -> nn.Module:
    """Four conv blocks and a linear head: trains in seconds on a CPU at 64 px."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, 32),
        *block(32, 64),
        *block(64, 128),
        *block(128, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, classes),
    )


def image_batch(samples: Sequence[Sample], size: int) -> torch.Tensor:
    """The samples' images resized to ``size`` x ``size``: uint8 ``(N, 3, size, size)``."""
    from PIL import Image

    arrays = [np.asarray(s.load_image().resize((size, size), Image.BILINEAR), dtype=np.uint8) for s in samples]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
