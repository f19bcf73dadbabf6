"""Options of the ``decodiff`` trainer and detector (a recipe's ``with:`` block). Light: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from defectkit.options import StrictOptions
from defectkit.rundir import check_run_reference

ModelSize = Literal["XS", "S", "M", "L", "XL"]

#: the issue's UNet sizes: model channels, attention heads, cross-attention context dimension
MODEL_SIZES: dict[str, tuple[int, int, int]] = {
    "XS": (64, 4, 128),
    "S": (128, 4, 256),
    "M": (192, 6, 384),
    "L": (256, 8, 512),
    "XL": (320, 12, 640),
}


class DecoDiffModelConfig(StrictOptions):
    """What the UNet, the latent space and the preprocessing look like (stored with the checkpoint)."""

    latent: Literal["vae", "pixel"] = Field(
        "vae",
        description="vae: a frozen diffusers AutoencoderKL latent (the paper); pixel: the image itself (CPU-sized)",
    )
    vae_id: str = Field(
        "stabilityai/sd-vae-ft-ema",
        description="AutoencoderKL hub id or local folder (latent: vae)",
        json_schema_extra={"only_when": {"latent": "vae"}},
    )
    pixel_patch: int = Field(
        1,
        ge=1,
        le=8,
        description="latent: pixel: p x p pixel blocks become channels (pixel unshuffle, lossless): a p-times "
        "smaller grid for the UNet",
        json_schema_extra={"only_when": {"latent": "pixel"}},
    )
    latent_scale: float = Field(
        0.18215,
        gt=0.0,
        description="factor applied to the VAE latent mean (latent: vae)",
        json_schema_extra={"only_when": {"latent": "vae"}},
    )
    image_size: int = Field(288, ge=16, le=2048, description="images are first resized to image_size x image_size")
    crop_size: int = Field(256, ge=16, le=2048, description="then centre-cropped to crop_size x crop_size")
    model_size: ModelSize = Field("L", description="UNet size: XS/S/M/L/XL (64/128/192/256/320 model channels)")
    model_channels: int | None = Field(None, ge=8, description="override the size's model channels")
    num_heads: int | None = Field(None, ge=1, description="override the size's attention heads")
    context_dim: int | None = Field(None, ge=1, description="override the size's cross-attention context dim")
    channel_mult: list[int] = Field(default_factory=lambda: [1, 2, 4], min_length=1, description="channels per level")
    num_res_blocks: int = Field(2, ge=1, description="residual blocks per UNet level")
    attention_resolutions: list[int] = Field(
        default_factory=lambda: [4, 2, 1], description="downsampling factors (1 = full latent size) with attention"
    )
    attention: Literal["transformer", "light"] = Field(
        "transformer",
        description="transformer: the official code's spatial transformer (1x1 projections, self- and "
        "cross-attention, GEGLU feed-forward; heads of model_channels/num_heads channels); light: self- and "
        "cross-attention only, num_heads heads at every level (about 30 % fewer parameters)",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout inside the residual blocks")
    dod_gate: bool = Field(False, description="DoD-gating: a sigmoid gate head multiplies the deviation output")
    skip_gate: bool = Field(False, description="skip-gating: each skip connection is scaled by (1 - sigmoid gate)")
    conv_padding: Literal["zeros", "reflect"] = Field(
        "zeros",
        description="padding of the UNet's 3x3 convolutions; reflect avoids the deviations a briefly trained "
        "model predicts along zero-padded borders",
    )
    diffusion_steps: int = Field(10, ge=2, le=1000, description="timesteps of the cosine schedule")

    @model_validator(mode="after")
    def _crop_fits(self) -> DecoDiffModelConfig:
        if self.crop_size > self.image_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than image_size {self.image_size}")
        factor = 8 if self.latent == "vae" else self.pixel_patch
        need = factor * 2 ** (len(self.channel_mult) - 1)
        if self.crop_size % need:
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of {need} for this latent and UNet depth")
        return self


class DecoDiffTrainConfig(DecoDiffModelConfig):
    """Training: random patch masking and shuffling, AdamW, cosine schedule with warm-up, accumulation."""

    steps: int = Field(20000, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="images per process per micro-batch")
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-4, gt=0.0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay")
    warmup_steps: int = Field(500, ge=0, description="linear warm-up before the cosine decay")
    mask_ratio_max: float = Field(
        0.7, ge=0.0, le=1.0, description="each image's masked share of patches is drawn from U(0, mask_ratio_max)"
    )
    patch_sizes: list[int] = Field(
        default_factory=lambda: [2, 4, 8], min_length=1, description="mask patch sizes in latent pixels (one per image)"
    )
    shuffle_share: float = Field(
        0.5, ge=0.0, le=1.0, description="share of masked patches given another patch's content instead of noise"
    )
    hflip: bool = Field(True, description="random horizontal flips of the training images")
    init_from: str | None = Field(
        None,
        description="RUN_DIR or RUN_DIR/STEP of a finished decodiff run: start from its weights (fine-tune on new "
        "data); the optimizer and schedule start anew",
    )

    _init_from_exists = field_validator("init_from")(check_run_reference)
    checkpoint_every: int = Field(1000, ge=1, description="optimizer steps between checkpoints (and at the end)")
    validation_images: int = Field(
        0,
        ge=0,
        description="good training images held out for choosing the checkpoint: each is scored as it is and with "
        "a synthetic defect pasted in (foreign patch, line, blur, colour change; defectkit.data.pasted) at every "
        "checkpoint, and the best by the mean of image and pixel AUROC is kept as best_checkpoint, which "
        "detect uses; 0: off (the last checkpoint)",
    )
    log_every: int = Field(10, ge=1, description="optimizer steps between loss log points (the report's curves)")
    seed: int = Field(0, description="seed of the masks and initial weights")
    classifier: bool = Field(
        True, description="also train the category classifier used by detect's category: auto (two+ categories)"
    )
    classifier_steps: int = Field(300, ge=1, description="optimizer steps of the category classifier")


#: detect options that change the maps without retraining, which validation_grid may choose among
GridOption = Literal["start_t", "sample_steps", "image_sigma", "latent_sigma", "image_clip", "latent_clip"]
MAX_GRID = 64


class DecoDiffDetectConfig(StrictOptions):
    """Sampling, post-processing and fusion of the anomaly maps."""

    sample_steps: int = Field(5, ge=1, description="DDIM deviation-correction steps")
    start_t: int = Field(5, ge=1, description="timestep the correction starts from (from the clean latent)")
    batch_size: int = Field(16, ge=1, description="images per batch")
    image_clip: float = Field(0.4, gt=0.0, description="image difference (channel max) is clipped here ...")
    image_sigma: float = Field(3.0, ge=0.0, description="... scaled by 1/image_clip and blurred with this sigma (px)")
    image_reference: Literal["decoded", "input"] = Field(
        "decoded",
        description="image map compares the decoded corrected latent with: decoded, the decoded clean latent (two "
        "decodes, as the official evaluation; the VAE's own reconstruction error cancels); input, the raw image",
    )
    latent_clip: float = Field(0.2, gt=0.0, description="latent difference (channel mean) is clipped here ...")
    latent_sigma: float = Field(1.0, ge=0.0, description="... scaled by 1/latent_clip, blurred (latent px), resized")
    fusion: Literal["geometric", "gated"] = Field(
        "geometric",
        description="geometric: sqrt(image x latent map); gated: 0.6 geometric + 0.4 DoD gate map (needs dod_gate)",
    )
    gate_sigma: float = Field(2.0, ge=0.0, description="blur sigma of the gate map (fusion: gated)")
    category: str = Field(
        "auto",
        description="class the UNet is conditioned on: auto (the sample's category, else the trained classifier) "
        "or a category name",
    )
    checkpoint: Literal["best", "last"] = Field(
        "best",
        description="best: the train step's best_checkpoint (chosen on its synthetic validation) where it made one, "
        "else the last; last: always the last checkpoint",
    )
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast of the UNet and VAE (GPU)")
    overlays: int = Field(12, ge=0, le=100, description="test images drawn as heat-map overlays for the report")
    validation_grid: dict[GridOption, list[int | float]] = Field(
        default_factory=dict,
        description="detect options to choose on the train step's synthetic validation (validation_images), "
        "e.g. {start_t: [2, 5], image_sigma: [2, 4]}: every combination scores it, the best by the mean of "
        "image and pixel AUROC is used for the test split, the threshold and threshold.json; {}: off",
    )
    threshold_percentile: float = Field(
        99.0, gt=0.0, le=100.0, description="without defective validation images (a val split, or the train step's synthetic "
        "validation_images): this percentile of normal scores"
    )

    @field_validator("validation_grid")
    @classmethod
    def _grid_is_small(cls, grid: dict[str, list[int | float]]) -> dict[str, list[int | float]]:
        import math

        for name, values in grid.items():
            if not values:
                raise ValueError(f"validation_grid.{name} is empty: give at least one value")
            for value in values:
                # the model re-validates each chosen combination; here only what makes a grid unusable
                if name in ("start_t", "sample_steps") and value != int(value):
                    raise ValueError(f"validation_grid.{name}: {value} is not a whole number")
        size = math.prod(len(v) for v in grid.values()) if grid else 0
        if size > MAX_GRID:
            raise ValueError(f"validation_grid has {size} combinations; at most {MAX_GRID} (each scores the validation set)")
        return grid
