"""Options of the ``patch_knn`` trainer and detector (a recipe's ``with:`` block). Light: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from defectkit.options import StrictOptions

#: torchvision ResNet-family builders with layer1..layer4 (checked against torchvision when the step runs)
BACKBONE_PATTERN = r"^(resnet\d+|wide_resnet\d+_\d+|resnext\d+_\d+x\d+d)$"

Layer = Literal["layer1", "layer2", "layer3", "layer4"]


class PatchKNNTrainConfig(StrictOptions):
    """How patch features are extracted and how the memory bank is subsampled."""

    backbone: str = Field(
        "resnet18",
        pattern=BACKBONE_PATTERN,
        description="torchvision ResNet-family model name: resnet18, resnet50, wide_resnet50_2, resnext50_32x4d ...",
    )
    weights: str | None = Field(
        "IMAGENET1K_V1",
        description=(
            "torchvision weights enum name (IMAGENET1K_V1, DEFAULT ...; downloaded by torchvision as usual), "
            "a local .pth/.pt/.safetensors state-dict file, or null for random weights drawn with `seed` (offline)"
        ),
    )
    layers: list[Layer] = Field(
        default_factory=lambda: ["layer2", "layer3"],
        min_length=1,
        description="backbone stages whose feature maps are pooled and concatenated; the earliest sets the patch grid",
    )
    image_size: int = Field(128, ge=32, le=1024, description="images are resized to image_size x image_size pixels")
    seed: int = Field(0, description="seed of the random backbone weights (weights: null) and the coreset projection")
    batch_size: int = Field(16, ge=1, description="images per forward pass")
    coreset_ratio: float = Field(
        0.1, gt=0.0, le=1.0, description="share of training patches kept in the memory bank (greedy k-center coreset)"
    )
    coreset_projection: int = Field(
        128,
        ge=0,
        description="random projection dimension used only to select the coreset (PatchCore's speed-up); 0 = none",
    )


class PatchKNNDetectConfig(PatchKNNTrainConfig):
    """Scoring options; the feature options are used when no checkpoint exists and the detector fits on the fly."""

    blur_sigma: float = Field(4.0, ge=0.0, description="Gaussian blur sigma of the anomaly map in pixels; 0 = none")
    image_score: Literal["map_max", "patchcore"] = Field(
        "map_max",
        description="map_max: the maximum of the blurred map; patchcore: the paper's reweighted maximum patch distance",
    )
    reweight_neighbors: int = Field(
        9, ge=1, description="memory-bank neighbours used by image_score: patchcore (the paper's b)"
    )
    overlays: int = Field(12, ge=0, le=100, description="test images drawn as heat-map overlays for the report")
