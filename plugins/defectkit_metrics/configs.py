"""Options of every metric (the ``with:`` block of an evaluate step); light, no torch.

Every field has a default, so ``use: [fid]`` with no options is valid.
Feature extractors follow one rule (see docs/metrics.md): ``extractor`` names
the standard weights (fetched by the library on first use), a backbone
(``timm:NAME`` or ``torchvision:NAME``, pretrained), or an import string
``package.module:factory`` returning a model; the extractor's name is always
reported next to the figure.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from defectkit.components import code_option
from defectkit.options import StrictOptions

#: extractor values with a colon that name a backbone, not code to import
BACKBONE_PREFIXES = ("timm:", "torchvision:")


class DetectionConfig(StrictOptions):
    """Options of the detection metrics (``detection`` and the single-figure ones)."""

    split: str = Field("test", description="the split whose samples hold the ground truth")
    fpr_limit: float = Field(0.3, gt=0.0, le=1.0, description="AUPRO integrates PRO up to this FPR and divides by it")


class _GenerationOptions(StrictOptions):
    real_split: str = Field(
        "gen_eval",
        description="split of real images to compare with (gen_eval: the defective images the generator did not see)",
    )
    image_size: int = Field(256, ge=16, description="images are resized to image_size x image_size before measuring")
    batch_size: int = Field(32, ge=1, description="images per forward pass")
    per_defect_type: bool = Field(False, description="also report the figure per defect type, as 'key/defect_type'")


class FIDConfig(_GenerationOptions):
    """Fréchet distance between feature statistics of real and generated images."""

    extractor: str = Field(
        "inception",
        description="inception (torch-fidelity FID weights), timm:NAME, torchvision:NAME, or package.module:factory",
        json_schema_extra=code_option(*BACKBONE_PREFIXES),
    )


class KIDConfig(FIDConfig):
    """Kernel (MMD) distance between features of real and generated images."""

    subset_size: int = Field(
        1000, ge=2, description="images per subset; lowered to the smaller set's size for small sets (NEU: 300)"
    )
    subsets: int = Field(100, ge=1, description="number of random subsets averaged")


class LPIPSConfig(_GenerationOptions):
    """Perceptual distance between each generated image and a real one."""

    extractor: str = Field(
        "alex",
        description="alex, vgg, squeeze (LPIPS weights), timm:NAME, or package.module:factory",
        json_schema_extra=code_option(*BACKBONE_PREFIXES),
    )
    pairing: Literal["auto", "source", "nearest"] = Field(
        "auto",
        description="source: the real image named by metadata 'source'; nearest: the closest real image "
        "of the same defect type; auto: source where every line has one, else nearest",
    )


class ICLPIPSConfig(_GenerationOptions):
    """Intra-cluster LPIPS: diversity of generated images around each training image."""

    extractor: str = Field(
        "alex",
        description="alex, vgg, squeeze (LPIPS weights), timm:NAME, or package.module:factory",
        json_schema_extra=code_option(*BACKBONE_PREFIXES),
    )
    cluster_split: str = Field(
        "gen_train", description="split whose images are the cluster centres (the generator's training images)"
    )


class CLIPScoreConfig(_GenerationOptions):
    """Image-text agreement: 100 x cosine similarity of CLIP embeddings, floored at 0."""

    model: str = Field(
        "ViT-B-32",
        description="an open_clip model name, or package.module:factory returning (model, preprocess, tokenizer)",
    )
    pretrained: str = Field("openai", description="open_clip pretrained tag (ignored for a factory)")
    prompt_field: str = Field("prompt", description="metadata.jsonl field holding each image's prompt")
    prompt_template: str = Field(
        "a photo of {defect_type} defect",
        description="prompt for images whose metadata has no prompt; {defect_type} is filled in",
    )


class SSIMConfig(_GenerationOptions):
    """Structural similarity between each generated image and a real one."""

    pairing: Literal["auto", "source", "nearest"] = Field(
        "auto",
        description="source: the real image named by metadata 'source'; nearest: the most similar real image "
        "of the same defect type; auto: source where every line has one, else nearest",
    )


class EdgeSSIMConfig(SSIMConfig):
    """SSIM of edge maps (Sobel magnitude or Canny) of generated and real images."""

    edges: Literal["sobel", "canny"] = Field("sobel", description="edge detector")
    canny_sigma: float = Field(1.0, gt=0.0, description="Gaussian sigma of the Canny detector")


class LBPConfig(_GenerationOptions):
    """Texture similarity of local-binary-pattern histograms (scikit-image)."""

    points: int = Field(8, ge=4, description="LBP sampling points P")
    radius: float = Field(1.0, gt=0.0, description="LBP radius R in pixels")


class InceptionScoreConfig(_GenerationOptions):
    """Inception Score of the generated images (needs classifier weights)."""

    extractor: str = Field(
        "inception",
        description="inception (torch-fidelity weights) or package.module:factory returning a classifier",
        json_schema_extra=code_option(*BACKBONE_PREFIXES),
    )
    splits: int = Field(10, ge=1, description="number of splits the score is averaged over")


class ClassificationConfig(StrictOptions):
    """Options of the classification metrics."""

    classes: list[str] | None = Field(
        None, description="class names in order; default: the sorted labels and predictions found"
    )
    figure: bool = Field(True, description="save the confusion matrix as a PNG and show it in the report")


class SegmentationConfig(StrictOptions):
    """Options of the segmentation metrics (IoU, Dice)."""

    split: str = Field("test", description="the split whose samples hold the ground-truth masks")
