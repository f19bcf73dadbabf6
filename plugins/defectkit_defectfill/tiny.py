"""Offline stand-ins for tests and the CPU-sized recipe (public: recipes name them by import string)."""

from __future__ import annotations

#: the import string a recipe gives as ``selection_extractor`` to use :func:`tiny_lpips_features`
LPIPS_FACTORY = "defectkit_defectfill.tiny:tiny_lpips_features"


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


#: the import string of :func:`tiny_image_features`, for KID in the CPU-sized recipe
FEATURES_FACTORY = "defectkit_defectfill.tiny:tiny_image_features"


def tiny_image_features():
    """The same seeded random pyramid, global-average-pooled into one vector per image (N, 96), for FID/KID.

    What the CPU recipe's KID is computed on offline (Inception weights are a download): it shows the
    machinery and orders sets by a texture statistic, not figures comparable with the paper's KID.
    """
    import torch
    from torch import nn

    pyramid = tiny_lpips_features()

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pyramid = pyramid

        def forward(self, x):
            return torch.cat([f.mean(dim=(2, 3)) for f in self.pyramid(x)], dim=1)

    return Pooled().eval()
