"""Offline stand-ins for tests and the CPU-sized recipe (public: recipes name them by import string)."""

from __future__ import annotations

#: the import string a recipe gives as ``selection_extractor`` to use :func:`tiny_lpips_features`
LPIPS_FACTORY = "defectkit_defectfill.testing:tiny_lpips_features"


def tiny_lpips_features():
    """A small random convolutional feature pyramid (seeded) for ``selection_extractor``.

    The published LPIPS networks need ImageNet weights from the internet; with this
    factory the selection runs the same LPIPS computation (channel-normalised
    feature differences over a pyramid, ``defectkit_metrics.extractors.FeatureLPIPS``)
    offline. Its distances are not comparable with AlexNet LPIPS figures.
    """
    import torch
    from torch import nn

    class Pyramid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stages = nn.ModuleList(
                [
                    nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU()),
                    nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()),
                    nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU()),
                ]
            )

        def forward(self, x):
            features = []
            for stage in self.stages:
                x = stage(x)
                features.append(x)
            return features

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = Pyramid().eval()
    finally:
        torch.random.set_rng_state(generator_state)
    return model
