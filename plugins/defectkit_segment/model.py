"""A small U-Net: an encoder chosen by name, a decoder that upsamples and concatenates its skips."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defectkit.errors import DefectkitError


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallEncoder(nn.Module):
    """Four conv stages at 1, 1/2, 1/4, 1/8 of the input: seconds per hundred steps on a CPU at 64 px."""

    def __init__(self, width: int) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList(
            [_block(3, widths[0])] + [_block(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.channels = widths

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            features.append(x)
        return features


class ResNetEncoder(nn.Module):
    """A torchvision ResNet's stem and four layers (1/2 ... 1/32 of the input)."""

    def __init__(self, name: str, pretrained: bool) -> None:
        super().__init__()
        import torchvision

        builder = getattr(torchvision.models, name)
        net = builder(weights="DEFAULT" if pretrained else None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.layers = nn.ModuleList([nn.Sequential(net.maxpool, net.layer1), net.layer2, net.layer3, net.layer4])
        expansion = 4 if name in ("resnet50", "resnet101", "resnet152") else 1
        self.channels = [64] + [c * expansion for c in (64, 128, 256, 512)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(features[-1]))
        return features


class TimmEncoder(nn.Module):
    """Any timm model that supports ``features_only``."""

    def __init__(self, name: str, pretrained: bool) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(name, pretrained=pretrained, features_only=True)
        self.channels = list(self.net.feature_info.channels())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net(x))


RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def build_encoder(name: str, pretrained: bool, width: int) -> nn.Module:
    if name == "small":
        if pretrained:
            raise DefectkitError("segmenter: encoder 'small' has no pretrained weights; set pretrained: false")
        return SmallEncoder(width)
    if name in RESNETS:
        return ResNetEncoder(name, pretrained)
    if name.startswith("timm:"):
        return TimmEncoder(name.removeprefix("timm:"), pretrained)
    raise DefectkitError(
        f"segmenter: unknown encoder {name!r}; use small, one of {', '.join(RESNETS)}, or timm:<model name>"
    )


class UNet(nn.Module):
    """Encoder features from fine to coarse; each decoder stage upsamples, concatenates the skip, convolves.

    The output is one logit per input pixel (the defect probability after a sigmoid).
    """

    def __init__(self, encoder: str = "small", pretrained: bool = False, width: int = 16) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, pretrained, width)
        channels = self.encoder.channels
        self.decoder = nn.ModuleList()
        below = channels[-1]
        for skip in reversed(channels[:-1]):
            out = max(width, skip // 2) if encoder != "small" else skip
            self.decoder.append(_block(below + skip, out))
            below = out
        self.head = nn.Conv2d(below, 1, 1)
        # ImageNet statistics: what pretrained encoders expect, harmless for random ones
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: B×3×H×W in [0, 1]; returns B×1×H×W logits."""
        size = x.shape[-2:]
        features = self.encoder((x - self.mean) / self.std)
        y = features[-1]
        for stage, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = stage(torch.cat([y, skip], 1))
        y = self.head(y)
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y
