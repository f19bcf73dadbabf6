"""Options of the fine-tuning trainers (a recipe's ``with:`` block). Light: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from defectkit.options import StrictOptions

Precision = Literal["auto", "no", "fp16", "bf16"]
Optimizer = Literal["adamw", "adamw_fused", "adamw_8bit"]
Schedule = Literal["constant", "constant_with_warmup", "cosine", "onecycle"]


class AugmentConfig(StrictOptions):
    """Augmentations suited to defects: small geometric moves, mild photometric changes.

    The defect mask gets exactly the same geometric transform as its image.
    """

    hflip: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip")
    vflip: float = Field(0.0, ge=0.0, le=1.0, description="probability of a vertical flip")
    rotate: float = Field(5.0, ge=0.0, le=180.0, description="rotation drawn from +-rotate degrees")
    translate: float = Field(0.05, ge=0.0, le=0.5, description="shift drawn from +-translate of the image size")
    brightness: float = Field(0.1, ge=0.0, le=1.0, description="brightness factor drawn from 1 +- brightness")
    contrast: float = Field(0.1, ge=0.0, le=1.0, description="contrast factor drawn from 1 +- contrast")
    mixup: float = Field(
        0.0, ge=0.0, description="MixUp Beta(alpha, alpha) between two images of the same class in a batch (0: off)"
    )
    cutmix: float = Field(
        0.0, ge=0.0, le=1.0, description="probability of CutMix with another image of the same class in a batch"
    )

    @property
    def random(self) -> bool:
        """Whether any per-step randomness changes the pixels (then VAE latents cannot be cached)."""
        return any((self.hflip, self.vflip, self.rotate, self.translate, self.brightness, self.contrast))


class FinetuneConfig(StrictOptions):
    """What every fine-tuning trainer shares: model, data, optimisation, checkpoints, validation."""

    # -- the model --------------------------------------------------------------------
    backend: str = Field("sd15", description="model_backend component: sd15, sdxl or sd3 (see `defectkit plugins`)")
    model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", description="Hugging Face Hub id or local pipeline folder"
    )
    mixed_precision: Precision = Field(
        "auto",
        description="no, fp16 or bf16 autocast with frozen weights in that dtype; auto: bf16 on a GPU that has it, "
        "else what `accelerate launch --mixed_precision` set, else no",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, slower")

    # -- the data ---------------------------------------------------------------------
    split: str = Field("train", description="which samples to train on: train, val, gen_train, ...")
    classes: list[str] | None = Field(None, description="defect types to train on (default: every defect type)")
    include_normal: bool = Field(False, description="also train on normal (good) images")
    resolution: int = Field(512, ge=16, le=4096, description="images are resized and centre-cropped to this square")
    prompt_template: str = Field(
        "a photo of {token} defect on a {object_class} surface",
        description="prompt per image; fields {token} (the class token, or the class name without one), "
        "{defect} and {object_class}",
    )
    captions: Literal["auto", "ignore"] = Field(
        "auto", description="auto: use the captions artifact of an earlier caption step where it has the image"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="data augmentation")
    cache_latents: bool | None = Field(
        None, description="encode images with the VAE once (default: when no random augmentation is on)"
    )
    defect_loss_weight: float = Field(
        1.0, ge=0.0, description="loss weight inside the defect mask (1: plain loss; >1 stresses the defect)"
    )

    # -- optimisation -----------------------------------------------------------------
    steps: int = Field(1000, ge=1, description="optimizer steps")
    batch_size: int = Field(1, ge=1, description="images per process per micro-batch")
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-4, gt=0.0, description="learning rate (peak rate of onecycle)")
    optimizer: Optimizer = Field(
        "adamw", description="adamw, adamw_fused (one kernel for all parameters) or adamw_8bit (bitsandbytes)"
    )
    weight_decay: float = Field(1e-2, ge=0.0, description="AdamW weight decay")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    adam_epsilon: float = Field(1e-8, gt=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping norm (0: off)")
    lr_scheduler: Schedule = Field("constant", description="constant, constant_with_warmup, cosine or onecycle")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps (constant_with_warmup, cosine)")
    onecycle_pct_start: float = Field(0.1, gt=0.0, lt=1.0, description="share of steps rising to lr (onecycle)")
    snr_gamma: float | None = Field(
        None, gt=0.0, description="min-SNR loss weighting gamma (5.0 is usual; SD 1.5/SDXL)"
    )
    noise_offset: float = Field(0.0, ge=0.0, description="offset noise strength (0.05-0.1 helps dark/bright images)")
    ema: bool = Field(False, description="keep an exponential moving average of the trained weights and save it")
    ema_decay: float = Field(0.9999, gt=0.0, lt=1.0)
    weighting_scheme: Literal["logit_normal", "sigma_sqrt", "mode", "cosmap", "none"] = Field(
        "logit_normal", description="SD3 flow matching: timestep density and loss weighting"
    )
    seed: int = Field(0, description="seed of the initial adapter weights, data order, noise and augmentation")

    # -- checkpoints, logs, validation --------------------------------------------------
    checkpoint_every: int = Field(500, ge=1, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(3, ge=1, description="how many of the latest checkpoints to keep")
    log_every: int = Field(10, ge=1, description="optimizer steps between loss log points")
    validation_every: int = Field(0, ge=0, description="optimizer steps between validation images (0: only at the end)")
    validation_images: bool = Field(True, description="draw validation images (TensorBoard and the report)")
    validation_prompts: list[str] | None = Field(None, description="default: one prompt per class from the template")
    validation_inference_steps: int = Field(20, ge=1)
    validation_guidance: float = Field(7.0, ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> FinetuneConfig:
        if self.cache_latents and self.augment.random:
            raise ValueError(
                "cache_latents: true caches the un-augmented images' latents, but augment changes pixels every "
                "step; set the augment probabilities/ranges to 0 or cache_latents: false"
            )
        if "{token}" not in self.prompt_template and "{defect}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {token} or {defect}, else every class gets the same prompt")
        return self

    @property
    def latents_cached(self) -> bool:
        return (not self.augment.random) if self.cache_latents is None else self.cache_latents


class LoraOptions(BaseModel):
    """Where the low-rank adapters go and how large they are."""

    rank: int = Field(16, ge=1, description="LoRA rank (16-32 for SDXL); with final_rank, the rank it starts at")
    final_rank: int | None = Field(
        None,
        ge=1,
        description="grow the denoiser's rank linearly from rank to final_rank over the steps (seed 000 §3.3; "
        "2 x rank there); the adapter is saved at final_rank. AdaLoRA prunes the other way",
    )
    rank_growth_share: float = Field(
        0.75,
        gt=0.0,
        le=1.0,
        description="share of the steps over which the rank grows; the seed's 1.0 reaches final_rank only at the "
        "last step, so its last components never train",
    )
    alpha: float | None = Field(None, gt=0.0, description="LoRA alpha (default: the rank, scale 1)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout")
    target_modules: list[str] = Field(
        default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"],
        description="attention projections of the UNet (SD3: transformer) that get adapters",
    )
    train_text_encoder: bool = Field(False, description="also put adapters on the text encoder(s) (not SD3's T5)")
    text_encoder_rank: int | None = Field(None, ge=1, description="rank of the text-encoder adapters (default: rank)")
    text_encoder_lr: float | None = Field(None, gt=0.0, description="learning rate of the text encoder (default: lr)")


class LoraTrainConfig(FinetuneConfig, LoraOptions):
    """LoRA on the UNet attention (peft ``LoraConfig``)."""

    @model_validator(mode="after")
    def _growth(self) -> LoraTrainConfig:
        if self.final_rank is not None and self.final_rank < self.rank:
            raise ValueError(f"final_rank {self.final_rank} is below rank {self.rank}: the rank only grows (see adalora)")
        return self


class DoraTrainConfig(LoraTrainConfig):
    """DoRA: LoRA with weight decomposition (peft ``LoraConfig(use_dora=True)``)."""


class AdaLoraTrainConfig(FinetuneConfig):
    """AdaLoRA: adapters start at ``init_r`` and peft prunes the budget to ``target_r`` on average."""

    init_r: int = Field(12, ge=1, description="initial rank of every adapter")
    target_r: int = Field(8, ge=1, description="average rank after pruning")
    tinit: int | None = Field(None, ge=0, description="steps before pruning starts (default: 10% of steps)")
    tfinal: int | None = Field(None, ge=0, description="steps at the end with a fixed budget (default: 20% of steps)")
    delta_t: int = Field(10, ge=1, description="steps between two budget allocations")
    orth_reg_weight: float = Field(0.5, ge=0.0, description="weight of the orthogonality regulariser")
    alpha: float | None = Field(None, gt=0.0, description="LoRA alpha (default: init_r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"])

    @model_validator(mode="after")
    def _schedule(self) -> AdaLoraTrainConfig:
        if self.target_r > self.init_r:
            raise ValueError(f"target_r {self.target_r} is larger than init_r {self.init_r}")
        tinit, tfinal = self.schedule
        if tinit >= self.steps - tfinal:
            raise ValueError(
                f"tinit {tinit} + tfinal {tfinal} leave no budgeting phase in {self.steps} steps; lower them"
            )
        return self

    @property
    def schedule(self) -> tuple[int, int]:
        tinit = self.tinit if self.tinit is not None else self.steps // 10
        tfinal = self.tfinal if self.tfinal is not None else self.steps // 5
        return tinit, tfinal


class TextualInversionOptions(BaseModel):
    """One new token per defect class, several vectors each."""

    token_template: str = Field("<{defect}>", description="the new token of a class, e.g. <scratches>")
    num_vectors: int = Field(4, ge=1, le=75, description="embedding vectors per token")
    initializer_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="words whose embedding starts a class's token, e.g. {scratches: scratch} (default: the class "
        "name; several sub-words are averaged)",
    )

    @model_validator(mode="after")
    def _token(self) -> TextualInversionOptions:
        if "{defect}" not in self.token_template:
            raise ValueError("token_template must contain {defect}: each class needs its own token")
        return self


class TextualInversionConfig(FinetuneConfig, TextualInversionOptions):
    """Textual inversion: only the new token embeddings train (SD 1.5 and SDXL)."""

    lr: float = Field(5e-4, gt=0.0, description="learning rate of the token embeddings")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay of the embeddings")


class TiLoraConfig(LoraTrainConfig, TextualInversionOptions):
    """Textual inversion and LoRA trained together (pivotal tuning)."""

    use_dora: bool = Field(False, description="DoRA instead of plain LoRA")
    embedding_lr: float = Field(5e-4, gt=0.0, description="learning rate of the token embeddings (lr: the LoRA's)")
