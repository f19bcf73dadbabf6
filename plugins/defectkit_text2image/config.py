"""Options of the text-to-image-from-scratch trainer and generator (a recipe's ``with:`` block). Light: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from defectkit.options import StrictOptions
from defectkit.rundir import check_run_reference

Prediction = Literal["epsilon", "sample", "v_prediction"]
Sampler = Literal["ddim", "ddpm", "dpm"]


class ModelConfig(StrictOptions):
    """The sizes of the pixel-space UNet and the CLIP text encoder, both trained from random weights."""

    channels: list[int] = Field(
        [32, 64, 64], min_length=2, description="UNet channels per level; each level after the first halves the size"
    )
    attention_levels: list[bool] = Field(
        [False, True, True], description="which levels have cross-attention to the text (one flag per level)"
    )
    layers_per_block: int = Field(1, ge=1, le=4, description="ResNet layers per UNet level")
    attention_head_dim: int = Field(8, ge=1, description="channels per attention head")
    norm_groups: int = Field(8, ge=1, description="GroupNorm groups; must divide every channel count")
    pooled_text: bool = Field(
        True,
        description="also pool the text into the timestep embedding (diffusers addition_embed_type 'text', as "
        "DeepFloyd IF): every ResNet block sees the prompt, which makes small models follow it much sooner",
    )
    text_hidden: int = Field(64, ge=8, description="text encoder width (also the UNet's cross-attention width)")
    text_layers: int = Field(2, ge=1, le=12, description="text encoder transformer layers")
    text_heads: int = Field(4, ge=1, description="text encoder attention heads; must divide text_hidden")
    max_tokens: int = Field(16, ge=4, le=77, description="prompts are padded or cut to this many tokens")
    tokenizer_merges: int = Field(
        2000,
        ge=0,
        le=48894,
        description="BPE merges of CLIP's vocabulary kept (48894: CLIP's full 49408-token vocabulary)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} flags for {len(self.channels)} levels in channels"
            )
        bad = [c for c in self.channels if c % self.norm_groups or c % self.attention_head_dim]
        if bad:
            raise ValueError(f"channels {bad} are not multiples of norm_groups and attention_head_dim")
        if self.text_hidden % self.text_heads:
            raise ValueError(f"text_hidden {self.text_hidden} is not a multiple of text_heads {self.text_heads}")
        return self


class Text2ImageTrainConfig(StrictOptions):
    """Train a small text-conditional pixel-space diffusion model from scratch."""

    # -- data --------------------------------------------------------------------------
    split: str = Field("train", description="samples to train on: train, gen_train, ...")
    classes: list[str] | None = Field(
        None, description="defect types to train on (default: every defect type; every image if none is defective)"
    )
    include_normal: bool = Field(False, description="also train on normal (good) images")
    resolution: int = Field(32, ge=8, le=512, description="images are resized and centre-cropped to this square")
    crop: Literal["centre", "defect"] = Field(
        "centre",
        description="centre: the centre square of each image; defect: a square around the defect's mask "
        "(or boxes), defect_margin times its size, so that the defect fills the image (a defect close-up)",
    )
    defect_margin: float = Field(1.5, ge=1.0, le=4.0, description="crop: defect - the square's side over the defect's")
    grayscale: bool = Field(False, description="train and generate one channel (NEU steel is grey)")
    hflip: bool = Field(True, description="random horizontal flips")
    vflip: bool = Field(False, description="random vertical flips")
    prompts: Literal["auto", "caption", "template"] = Field(
        "auto", description="auto: a sample's caption where it has one, else the template; caption: captions only"
    )
    prompt_template: str = Field(
        "a photo of {defect} defect on a {object_class} surface",
        description="prompt per image and per generated class; fields {defect} and {object_class}",
    )
    caption_dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of prompts replaced by the empty prompt (classifier-free guidance)"
    )

    # -- the model ---------------------------------------------------------------------
    model: ModelConfig = Field(default_factory=ModelConfig)
    prediction_type: Prediction = Field(
        "v_prediction", description="what the UNet predicts: epsilon (noise), sample (the clean image) or v_prediction"
    )
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field("squaredcos_cap_v2")
    train_timesteps: int = Field(1000, ge=10)

    # -- optimisation ------------------------------------------------------------------
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1, description="images per micro-batch (per process)")
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-3, gt=0.0)
    text_encoder_lr: float | None = Field(
        None,
        ge=0.0,
        description="the text encoder's rate (none: lr; 0: keep it frozen at its random weights, which keeps "
        "prompts apart: a text encoder trained from the first step collapses to nearly one output for every prompt)",
    )
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_steps: int = Field(20, ge=0, description="optimizer steps of linear learning-rate warm-up")
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    mixed_precision: Literal["auto", "no", "bf16"] = Field("auto", description="auto: bf16 on a GPU that has it")
    seed: int = Field(0, description="weights, data order and noise all follow from it")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads while this step runs on a CPU (none: torch's default); a 32 px model's many small "
        "operations run faster on one thread than split over cores that other work also uses",
    )

    # -- EMA and plateau ---------------------------------------------------------------
    ema: bool = Field(True, description="keep an exponential moving average of the weights; it is what is exported")
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0, description="the EMA's largest decay")
    ema_warmup: bool = Field(True, description="grow the decay with the step count (diffusers' EMA warm-up)")
    plateau_patience: int | None = Field(
        None, ge=1, description="epochs without a lower epoch loss before plateau_action (none: never)"
    )
    plateau_action: Literal["stop", "halve_lr"] = Field("stop", description="stop training, or halve the learning rate")
    plateau_min_delta: float = Field(0.0, ge=0.0, description="a loss lower by less than this is no improvement")
    min_lr: float = Field(1e-6, gt=0.0, description="halve_lr stops training once the rate would fall below this")

    # -- checkpoints and samples -------------------------------------------------------
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints (and one after the last epoch)")
    init_from: str | None = Field(
        None,
        description="RUN_DIR or RUN_DIR/STEP of a finished text2image_scratch run: start from its trained weights "
        "(fine-tune on new data); the optimizer, EMA and schedule start anew",
    )

    _init_from_exists = field_validator("init_from")(check_run_reference)
    keep_checkpoints: int = Field(2, ge=1)
    min_free_disk_mb: int = Field(
        200, ge=0, description="refuse to write a checkpoint unless this much is free beyond its own size"
    )
    sample_every: int | None = Field(10, ge=1, description="epochs between sample grids (none: only the final one)")
    sample_per_class: int = Field(4, ge=1, le=32, description="images per class in a sample grid")
    sample_steps: int = Field(25, ge=1, description="DDIM steps of the sample grids")
    sample_guidance: float = Field(4.0, ge=1.0, description="classifier-free guidance of the sample grids")
    log_every: int = Field(10, ge=1, description="optimizer steps between loss points")

    @model_validator(mode="after")
    def _resolution_fits(self) -> Text2ImageTrainConfig:
        halvings = 2 ** (len(self.model.channels) - 1)
        if self.resolution % halvings:
            raise ValueError(
                f"resolution {self.resolution} is not divisible by {halvings} "
                f"(the {len(self.model.channels)} UNet levels halve it {len(self.model.channels) - 1} times)"
            )
        return self


class Text2ImageGenerateConfig(StrictOptions):
    """Generate N images per class from a model trained by ``text2image_scratch``."""

    model: str | None = Field(
        None, description="model folder; default: the text2image_model artifact of an earlier train step"
    )
    per_class: int = Field(16, ge=1, description="images per class")
    classes: list[str] | None = Field(None, description="classes to generate (default: every class the model learnt)")
    prompt_template: str | None = Field(None, description="default: the template the model was trained with")
    weights: Literal["ema", "raw"] = Field("ema", description="the averaged (EMA) weights or the last trained ones")
    sampler: Sampler = Field("ddim", description="ddim, ddpm or dpm (DPMSolver++ multistep)")
    steps: int = Field(30, ge=1, description="denoising steps")
    guidance: float = Field(4.0, ge=1.0, description="classifier-free guidance scale (1: none)")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0: deterministic)")
    output_size: int | None = Field(None, ge=8, description="resize the images to this square (default: as trained)")
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0)
    contact_sheet: bool = Field(True, description="write contact_sheet.png and show it in the report")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads while this step runs on a CPU (none: torch's default); a 32 px model's many small "
        "operations run faster on one thread than split over cores that other work also uses",
    )
