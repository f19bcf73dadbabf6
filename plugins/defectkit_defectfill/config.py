"""Options of the DefectFill trainer and generator (a recipe's ``with:`` blocks). Light: no torch."""

from __future__ import annotations

from typing import Literal

from defectkit_finetune.api import AugmentConfig
from pydantic import Field, model_validator

from defectkit.components import code_option
from defectkit.options import StrictOptions

Precision = Literal["auto", "no", "fp16", "bf16"]
Optimizer = Literal["adamw", "adamw_fused", "adamw_8bit"]
Schedule = Literal["constant", "constant_with_warmup", "cosine", "onecycle"]
INPAINTING_BACKENDS = ("sd2_inpainting", "sd15_inpainting", "sdxl_inpainting")


class DefectFillTrainConfig(StrictOptions):
    """DefectFill (Song et al., CVPR 2025): an inpainting model fine-tuned with LoRA and a learned defect token.

    The optimisation options have the meaning they have in the finetune trainers, whose loop this one runs.
    """

    # -- the model --------------------------------------------------------------------
    backend: str = Field(
        "sd2_inpainting",
        description="inpainting model_backend: sd2_inpainting (the paper's), sd15_inpainting, sdxl_inpainting",
    )
    model: str = Field("", description="hub id or local inpainting pipeline folder; empty: the backend's default")
    tiny_model: bool = Field(
        False,
        description="build a tiny random inpainting pipeline of the backend's family in the step folder and train "
        "that (offline, CPU-sized: proves the machinery, not quality); model must then be empty",
    )
    mixed_precision: Precision = Field("auto", description="no, fp16 or bf16; auto: bf16 on a GPU that has it, else no")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, slower")

    # -- the data ---------------------------------------------------------------------
    split: str = Field("gen_train", description="defect images (with masks) to learn from: gen_train, train, ...")
    classes: list[str] | None = Field(None, description="defect types to learn (default: every defect type of split)")
    resolution: int = Field(512, ge=16, le=4096, description="images and masks are resized and centre-cropped to this")
    object_class: str = Field("", description="the [object] of the object prompt; empty: each image's category")
    defect_prompt: str = Field("A photo of {token}", description="defect-loss prompt ({token}: the class's [V*])")
    object_prompt: str = Field(
        "A {object_class} with {token}", description="object-loss prompt ({object_class}, {token})"
    )
    augment: AugmentConfig = Field(
        default_factory=lambda: AugmentConfig(hflip=0.5, rotate=0.0, translate=0.0, brightness=0.0, contrast=0.0),
        description="augmentation of image and mask together (the finetune trainers' options)",
    )

    # -- the defect token and the adapters -----------------------------------------------
    token_template: str = Field("<{defect}>", description="the learned token [V*] of a defect type")
    num_vectors: int = Field(1, ge=1, le=16, description="embedding vectors of each token")
    initializer_tokens: dict[str, str] = Field(
        default_factory=dict, description="words whose embedding starts a type's token (default: the type name)"
    )
    rank: int = Field(8, ge=1, description="LoRA rank of the UNet and text-encoder adapters")
    alpha: float | None = Field(None, gt=0.0, description="LoRA alpha (default: the rank)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="LoRA dropout")
    target_modules: list[str] = Field(
        default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"], description="UNet attention projections with LoRA"
    )
    use_dora: bool = Field(False, description="DoRA instead of plain LoRA")
    train_text_encoder: bool = Field(
        True,
        description="LoRA on the CLIP text encoder(s) too, as the paper does (needs transformers < 5.24 with peft 0.21)",
    )
    text_encoder_rank: int | None = Field(None, ge=1, description="rank of the text-encoder adapters (default: rank)")
    text_encoder_lr: float | None = Field(None, gt=0.0, description="learning rate of the text encoder (default: lr)")
    embedding_lr: float = Field(5e-4, gt=0.0, description="learning rate of the token embeddings")

    # -- the losses ---------------------------------------------------------------------
    lambda_defect: float = Field(0.5, ge=0.0, description="weight of the defect loss (real mask, defect prompt)")
    lambda_object: float = Field(0.2, ge=0.0, description="weight of the object loss (random boxes, object prompt)")
    lambda_attention: float = Field(0.05, ge=0.0, description="weight of the attention loss ([V*] map vs the mask)")
    alpha_object: float = Field(
        0.3, ge=0.0, le=1.0, description="object loss weight outside the defect: M + alpha (1 - M)"
    )
    attention_branch: Literal["defect", "object"] = Field(
        "defect", description="which forward pass's [V*] cross-attention the attention loss aligns with the mask"
    )
    lambda_lpips: float = Field(
        0.0,
        ge=0.0,
        description="weight of the perceptual loss (seed 001 §11; 0: off): LPIPS between the real image and the "
        "decoded one-step estimate of the clean image with the real pixels outside the defect, on the defect "
        "branch, each sample weighted by its signal share alpha_bar_t; decodes through the VAE with gradients "
        "(memory: consider gradient_checkpointing)",
    )
    lpips_extractor: str = Field(
        "alex",
        description="LPIPS network of the perceptual loss: alex, vgg, squeeze (torchmetrics; ImageNet weights are "
        "downloaded once), timm:NAME or package.module:factory (as the lpips metric)",
        json_schema_extra=code_option("timm:", "torchvision:"),
    )
    lambda_attention_consistency: float = Field(
        0.0,
        ge=0.0,
        description="weight of the multi-scale attention consistency (seed 001 §11; 0: off): the variance of the "
        "[V*] attention map across the decoder's resolutions (same branch as the attention loss); needs "
        "cross-attention at two or more decoder resolutions, as the Stable Diffusion UNets have",
    )
    box_size: tuple[float, float] = Field(
        (0.1, 0.5), description="random box sides, as a share of the image side (min, max)"
    )
    max_boxes: int = Field(1, ge=1, le=8, description="random boxes per object-loss mask (1 to this many)")

    # -- optimisation (as in the finetune trainers) --------------------------------------
    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(4, ge=1, description="defect images per process per micro-batch (each is used twice)")
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(2e-4, gt=0.0, description="learning rate of the UNet LoRA")
    optimizer: Optimizer = Field("adamw", description="adamw, adamw_fused or adamw_8bit (bitsandbytes)")
    weight_decay: float = Field(1e-2, ge=0.0, description="AdamW weight decay")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0)
    adam_epsilon: float = Field(1e-8, gt=0.0)
    max_grad_norm: float = Field(1.0, ge=0.0, description="gradient clipping norm (0: off)")
    lr_scheduler: Schedule = Field(
        "constant_with_warmup", description="constant, constant_with_warmup, cosine, onecycle"
    )
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps")
    onecycle_pct_start: float = Field(0.1, gt=0.0, lt=1.0, description="share of steps rising to lr (onecycle)")
    seed: int = Field(0, description="seed of the adapters, the data order, the noise and the boxes")

    # -- checkpoints and logs -------------------------------------------------------------
    checkpoint_every: int = Field(500, ge=1, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(3, ge=1, description="how many of the latest checkpoints to keep")
    log_every: int = Field(10, ge=1, description="optimizer steps between loss log points")
    attention_log_every: int = Field(
        100, ge=0, description="steps between attention-map images in TensorBoard (0: only the last)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DefectFillTrainConfig:
        if self.backend not in INPAINTING_BACKENDS:
            raise ValueError(f"backend must be an inpainting backend: {', '.join(INPAINTING_BACKENDS)}")
        if self.tiny_model and self.model:
            raise ValueError("tiny_model: true builds its own pipeline; leave model empty")
        if "{defect}" not in self.token_template:
            raise ValueError("token_template must contain {defect}: each defect type needs its own token")
        for name in ("defect_prompt", "object_prompt"):
            if "{token}" not in getattr(self, name):
                raise ValueError(f"{name} must contain {{token}}: the [V*] token is what the losses train")
        low, high = self.box_size
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"box_size: need 0 < min <= max <= 1, got {list(self.box_size)}")
        return self

    # what defectkit_finetune.data reads (select_samples, load_records): the defect prompt per image
    @property
    def prompt_template(self) -> str:
        return self.defect_prompt

    @property
    def include_normal(self) -> bool:
        return False


class MaskConfig(StrictOptions):
    """Where the masks of the defects to generate come from."""

    source: Literal["real", "random", "folder"] = Field(
        "real",
        description="real: shapes of the real defect masks of the type (split), flipped, rotated and moved; "
        "random: random ellipses and boxes; folder: the PNG masks in folder, in name order",
    )
    split: str = Field("gen_train", description="real: the split whose defect masks give the shapes")
    folder: str = Field("", description="folder: a folder of mask images (white = defect)")
    size: tuple[float, float] = Field((0.08, 0.3), description="random: shape sides as a share of the image side")
    dilate: int = Field(0, ge=0, le=64, description="grow each mask by this many pixels")

    @model_validator(mode="after")
    def _folder(self) -> MaskConfig:
        if self.source == "folder" and not self.folder:
            raise ValueError("source: folder needs folder: a folder of mask images")
        low, high = self.size
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"size: need 0 < min <= max <= 1, got {list(self.size)}")
        return self


class DefectFillGenerateConfig(StrictOptions):
    """Good image + mask -> defective image, with low-fidelity selection and exact pixels outside the mask."""

    adapter: str = Field(
        "auto", description="auto: the adapter artifact of an earlier defectfill train step; or an adapter folder"
    )
    backend: str = Field("", description="inpainting model_backend; empty: the one the adapter was trained on")
    model: str = Field("", description="hub id or pipeline folder; empty: the adapter's base model")
    device: str = Field("auto", description="auto (the step's device), cpu, cuda, ...")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="weights dtype of the pipeline")
    source_split: str = Field("train", description="split whose good (normal) images get the defects")
    defect_types: list[str] = Field(default_factory=list, description="types to generate; empty: the adapter's")
    combine: list[list[str]] = Field(
        default_factory=list,
        description="extra groups of several types in one image and prompt, e.g. [[hole, cut]]: "
        "one mask per type, the prompt names every type's token",
    )
    images_per_class: int = Field(8, ge=1, description="images per defect type (and per combined group)")
    object_class: str = Field("", description="the {object_class} of the prompt; empty: the good image's category")
    prompt: str = Field("A {object_class} with {tokens}", description="prompt; {tokens}: the tokens joined by ' and '")
    negative_prompt: str = Field("", description="negative prompt")
    mask: MaskConfig = Field(default_factory=MaskConfig, description="where the masks come from")
    candidates: int = Field(4, ge=1, le=64, description="K images per mask; low-fidelity selection keeps one")
    selection_extractor: str = Field(
        "alex",
        description="LPIPS network of the selection: alex, vgg, squeeze (torchmetrics; ImageNet weights are "
        "downloaded once), timm:NAME or package.module:factory (as the lpips metric)",
        json_schema_extra=code_option("timm:", "torchvision:"),
    )
    selection_size: int = Field(128, ge=16, le=1024, description="the mask's box is resized to this for LPIPS")
    resolution: int | None = Field(None, ge=16, description="generation resolution; empty: the adapter's")
    steps: int = Field(50, ge=1, le=1000, description="denoising steps")
    guidance: float = Field(7.5, ge=0.0, description="classifier-free guidance scale")
    strength: float = Field(1.0, gt=0.0, le=1.0, description="how much of the masked area is re-noised")
    latent_blending: bool = Field(
        False,
        description="mask-guided latent blending (seed 001 §11): after every denoising step the latents outside "
        "the mask are replaced by the good image's latents noised to that step, so the known region steers "
        "the defect's surroundings during sampling (the final pixel blend keeps them exact either way)",
    )
    save_attention: bool = Field(
        False,
        description="also write each image's [V*] cross-attention map per defect type (decoder layers and "
        "denoising steps averaged, the prompt's branch; divided by its maximum, white = attended) as "
        "generated/attention/<index>_<type>.png, named in the image's metadata",
    )
    seed: int | None = Field(None, description="first image's seed; empty: the recipe seed")
    contact_sheet: bool = Field(True, description="write contact_sheet.png (one row per type)")

    @model_validator(mode="after")
    def _consistent(self) -> DefectFillGenerateConfig:
        if "{tokens}" not in self.prompt:
            raise ValueError("prompt must contain {tokens}: the learned defect tokens")
        for number, group in enumerate(self.combine):
            if len(group) < 2 or len(set(group)) != len(group):
                raise ValueError(f"combine[{number}]: give two or more different defect types")
        if self.backend and self.backend not in INPAINTING_BACKENDS:
            raise ValueError(f"backend must be an inpainting backend: {', '.join(INPAINTING_BACKENDS)}")
        return self
