"""Feature extractors for FID, KID, IS, LPIPS and CLIP score, chosen by one string.

The rule, the same for every metric:

- a standard name (``inception`` for FID/KID/IS, ``alex``/``vgg``/``squeeze``
  for LPIPS, an open_clip model name for CLIP score): the published weights,
  downloaded by the library on first use, so figures compare with the papers;
- ``timm:NAME`` or ``torchvision:NAME``: that ImageNet-pretrained backbone;
- ``package.module:factory``: a callable returning the model (how tests pass a
  tiny model, and how a user brings a domain backbone).

Figures from different extractors cannot be compared, so every result carries
the extractor's name (:func:`extractor_name`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from defectkit.components import resolve
from defectkit.errors import DefectkitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: LPIPS networks whose linear calibration weights torchmetrics ships
LPIPS_NETS = ("alex", "vgg", "squeeze")


class ExtractorError(DefectkitError):
    """An extractor that cannot be built (unknown name, missing weights or package)."""


def is_import_string(spec: str) -> bool:
    return ":" in spec and not spec.startswith(("timm:", "torchvision:"))


def extractor_name(spec: str) -> str:
    """The name reported with a figure: ``inception`` is the torch-fidelity FID network."""
    return "inception-v3-compat" if spec == "inception" else spec


def load_factory(spec: str, purpose: str) -> object:
    """Call the factory named by import string ``spec`` and return what it builds."""
    try:
        factory = resolve(spec)
    except (ImportError, AttributeError) as exc:
        raise ExtractorError(f"{purpose} extractor {spec!r}: cannot import it ({exc})") from None
    if not callable(factory):
        raise ExtractorError(f"{purpose} extractor {spec!r}: is not callable")
    return factory()


class ImageNetBackbone(nn.Module):
    """A pretrained classifier trunk as a feature extractor: float [0, 1] images in, (N, D) features out."""

    def __init__(self, trunk: nn.Module, size: int = 224) -> None:
        super().__init__()
        self.trunk = trunk.eval()
        self.size = size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(images.float(), size=(self.size, self.size), mode="bilinear", antialias=True)
        features = self.trunk((x - self.mean) / self.std)
        return features.flatten(1)


def backbone(spec: str, features_only: bool = False) -> nn.Module:
    """``timm:NAME`` / ``torchvision:NAME`` with pretrained weights, as pooled features or a feature pyramid."""
    source, _, name = spec.partition(":")
    try:
        if source == "timm":
            import timm

            if features_only:
                return timm.create_model(name, pretrained=True, features_only=True).eval()
            return ImageNetBackbone(timm.create_model(name, pretrained=True, num_classes=0))
        import torchvision

        model = torchvision.models.get_model(name, weights="DEFAULT")
    except (ImportError, RuntimeError, OSError, ValueError) as exc:
        raise ExtractorError(f"extractor {spec!r}: cannot build it with pretrained weights ({exc})") from None
    if features_only:
        raise ExtractorError(f"extractor {spec!r}: LPIPS needs a feature pyramid; use timm:NAME or a factory")
    # drop the classification head so the pooled features come out
    for head in ("fc", "classifier", "head", "heads"):
        if hasattr(model, head):
            setattr(model, head, nn.Identity())
            break
    return ImageNetBackbone(model)


def feature_extractor(spec: str, purpose: str) -> nn.Module | int | str:
    """What torchmetrics' FID/KID/IS take as ``feature``: a layer id for ``inception``, else a module.

    A module maps float images in [0, 1], shape (N, 3, H, W), to (N, D).
    """
    if spec == "inception":
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise ExtractorError(
                f"{purpose} with extractor 'inception' needs torch-fidelity (pip install torch-fidelity), "
                "which downloads the FID Inception weights on first use; offline, name another extractor"
            ) from None
        return "logits_unbiased" if purpose == "inception_score" else 2048
    if spec.startswith(("timm:", "torchvision:")):
        return backbone(spec)
    if is_import_string(spec):
        model = load_factory(spec, purpose)
        if not isinstance(model, nn.Module):
            raise ExtractorError(f"{purpose} extractor {spec!r}: the factory must return a torch.nn.Module")
        return model.eval()
    raise ExtractorError(
        f"{purpose}: unknown extractor {spec!r}; use 'inception', 'timm:NAME', 'torchvision:NAME' "
        "or 'package.module:factory'"
    )


def _unit_normalise(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class FeatureLPIPS(nn.Module):
    """LPIPS with equal layer weights on any feature pyramid (no learned calibration).

    Distance = sum over layers of the spatial mean of the squared difference of
    channel-normalised features, as LPIPS computes it before its learned
    linear layers; use it where no calibration exists for the backbone.
    """

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(a.shape[0])
        for fa, fb in zip(_as_layers(self.features(a)), _as_layers(self.features(b)), strict=True):
            if fa.ndim == 2:
                fa, fb = fa[:, :, None, None], fb[:, :, None, None]
            diff = (_unit_normalise(fa) - _unit_normalise(fb)).pow(2).sum(dim=1)
            total = total + diff.mean(dim=(1, 2))
        return total


def _as_layers(output: torch.Tensor | list | tuple | dict) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return list(output.values())
    return list(output)


def lpips_distance(spec: str, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A function of two float [0, 1] image batches returning one LPIPS distance per pair.

    The network is frozen; the distance is differentiable in its inputs (a perceptual training loss uses it).
    """
    if spec in LPIPS_NETS:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        try:
            metric = LearnedPerceptualImagePatchSimilarity(net_type=spec, normalize=True).to(device)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ExtractorError(
                f"lpips extractor {spec!r}: cannot load the ImageNet backbone weights ({exc}); "
                "offline, pass a factory 'package.module:function'"
            ) from None
        network = metric.net.requires_grad_(False)  # frozen: a loss may differentiate through it to its inputs
        return lambda a, b: network(a, b, normalize=True).flatten()
    if spec.startswith("timm:"):
        model: nn.Module = FeatureLPIPS(backbone(spec, features_only=True))
    elif is_import_string(spec):
        built = load_factory(spec, "lpips")
        if not isinstance(built, nn.Module):
            raise ExtractorError(f"lpips extractor {spec!r}: the factory must return a torch.nn.Module")
        model = FeatureLPIPS(built)
    else:
        raise ExtractorError(
            f"lpips: unknown extractor {spec!r}; use {', '.join(LPIPS_NETS)}, 'timm:NAME' or 'package.module:factory'"
        )
    model = model.to(device).requires_grad_(False)
    return lambda a, b: model(a, b)
