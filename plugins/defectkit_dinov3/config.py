"""Options of the dinov3 plugin's components (a recipe's ``with:`` blocks). Light: no torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from defectkit.options import StrictOptions

DINOV3_SMALL = "facebook/dinov3-vits16-pretrain-lvd1689m"
DINOV2_SMALL = "facebook/dinov2-small"


class _Options(StrictOptions):
    model_config = ConfigDict(populate_by_name=True)


class _HFBackboneConfig(_Options):
    """A transformers ViT: weights by hub id or local folder, or random weights from a config."""

    model: str | None = Field(
        None,
        description="hub id or local folder for from_pretrained (hub ids are downloaded as usual)",
    )
    config: dict[str, Any] | None = Field(
        None,
        description="build a randomly initialised ViT from these config fields instead (offline, CPU-sized), "
        "e.g. {hidden_size: 128, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 256}",
    )
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) for a hub id")

    @model_validator(mode="after")
    def _one_source(self) -> _HFBackboneConfig:
        if self.model is not None and self.config is not None:
            raise ValueError("give either model (pretrained weights) or config (random weights), not both")
        return self


class DINOv3BackboneConfig(_HFBackboneConfig):
    """DINOv3 ViT (``DINOv3ViTModel``): patch 16, 4 register tokens in the released ViTs."""

    @model_validator(mode="after")
    def _default_model(self) -> DINOv3BackboneConfig:
        if self.model is None and self.config is None:
            self.model = DINOV3_SMALL
        return self


class DINOv2BackboneConfig(_HFBackboneConfig):
    """DINOv2 ViT (``Dinov2Model``): patch 14."""

    @model_validator(mode="after")
    def _default_model(self) -> DINOv2BackboneConfig:
        if self.model is None and self.config is None:
            self.model = DINOV2_SMALL
        return self


class TimmBackboneConfig(_Options):
    """A timm ViT by name."""

    model: str = Field("vit_small_patch16_224", description="timm model name (timm.list_models('vit_*'))")
    pretrained: bool = Field(False, description="load timm's pretrained weights (downloaded by timm as usual)")


class BackboneRef(_Options):
    """Which ``model_backend`` component builds the backbone, and its options."""

    use: str = Field("dinov3", description="model_backend name: dinov3, dinov2 or timm")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="that backend's options (model, config, ...)"
    )


class Stage(_Options):
    """One training stage; the seed's recipe is a frozen-backbone stage followed by fine-tuning."""

    epochs: int = Field(..., ge=1, description="epochs in this stage")
    lr: float = Field(..., gt=0, description="peak learning rate of the heads (cosine decay, 1-epoch warm-up)")
    freeze_backbone: bool = Field(False, description="train only the decoder and heads")
    backbone_lr: float | None = Field(None, gt=0, description="learning rate of the backbone; default: lr")


class AugmentConfig(_Options):
    """Training augmentations; geometric ones move image and mask together, photometric ones touch the image only."""

    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.5, ge=0, le=1, description="probability of a vertical flip")
    rot90: bool = Field(True, description="rotate by a random multiple of 90 degrees")
    crop_scale: tuple[float, float] = Field(
        (0.6, 1.0), description="random resized crop: range of the kept area share; (1, 1) = none"
    )
    brightness: float = Field(0.2, ge=0, description="colour jitter: brightness factor range 1 +- this")
    contrast: float = Field(0.2, ge=0, description="colour jitter: contrast factor range 1 +- this")
    saturation: float = Field(0.1, ge=0, description="colour jitter: saturation factor range 1 +- this")
    noise_std: float = Field(0.02, ge=0, description="maximum standard deviation of additive Gaussian noise")
    blur: float = Field(0.2, ge=0, le=1, description="probability of a Gaussian blur (sigma 0.1-1.5)")


class MultiTaskTrainConfig(_Options):
    """Training of the multi-task classifier (segmentation-guided)."""

    backbone: BackboneRef = Field(default_factory=BackboneRef, description="the ViT backbone")
    image_size: int = Field(224, ge=32, le=1024, description="images are resized to image_size x image_size")
    stages: list[Stage] = Field(
        default_factory=lambda: [
            Stage(epochs=10, lr=1e-3, freeze_backbone=True),
            Stage(epochs=20, lr=1e-4, freeze_backbone=False),
        ],
        min_length=1,
        description="training stages in order (frozen backbone, then fine-tuning)",
    )
    batch_size: int = Field(32, ge=1, description="images per micro-batch")
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step (effective batch: both)")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay")
    decoder_channels: int = Field(128, ge=8, description="channels of the segmentation decoder")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the classification heads")
    classification_loss: Literal["ce", "focal"] = Field("ce", description="cross-entropy or focal loss")
    focal_gamma: float = Field(2.0, ge=0, description="focal loss gamma (0 gives cross-entropy)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the multi-class loss")
    weighting: Literal["dynamic", "uncertainty"] = Field(
        "dynamic",
        description="dynamic: the schedule below; uncertainty: Kendall et al. learned task weights",
    )
    switch_epoch: int = Field(20, ge=0, description="epoch (counted over all stages) at which the weights switch")
    classification_weights: tuple[float, float] = Field(
        (0.5, 1.0), description="classification loss weight before and after switch_epoch"
    )
    segmentation_weights: tuple[float, float] = Field(
        (1.0, 0.3), description="segmentation loss weight (Dice + BCE) before and after switch_epoch"
    )
    balance: Literal["none", "loss_weights", "sampler"] = Field(
        "loss_weights",
        description="class imbalance: inverse-frequency loss weights, a weighted sampler, or none",
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="training augmentations")
    pseudo_masks: Literal["none", "cam", "attention"] = Field(
        "none",
        description="from the second stage on, defective training images without a mask train the decoder on a "
        "thresholded map (weak supervision): cam, the class activation map of their class; attention, the "
        "backbone's last-layer CLS-to-patch self-attention (DINO's attention maps, no class needed)",
    )
    cam_threshold: float = Field(
        0.5, gt=0, lt=1, description="map value (each map normalised to [0, 1]) that counts as defect (cam, attention)"
    )
    cache_images: bool = Field(True, description="keep decoded, resized training images in memory")
    mixed_precision: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    onnx: bool = Field(False, description="also export model.onnx next to the checkpoint (needs onnx)")


class MultiTaskPredictConfig(_Options):
    """Inference on the test split with a trained checkpoint (the ``checkpoint`` artifact)."""

    checkpoint: str | None = Field(
        None, description="a checkpoint folder; default: the checkpoint artifact of an earlier train step"
    )
    weights: Literal["last", "best"] = Field(
        "last",
        description="last: the final epoch; best: the epoch with the best validation accuracy (the train step "
        "needs a validation split, data.split.val_fraction)",
    )
    batch_size: int = Field(32, ge=1, description="images per forward pass")
    mask_threshold: float = Field(0.5, gt=0, lt=1, description="defect probability above which a pixel is defect")
    visualizations: int | None = Field(
        None, ge=0, description="visualisation PNGs to write (image, mask, attention, label); null: one per image"
    )
    figures: int = Field(12, ge=0, description="visualisations also shown in the report")
