"""Options of the diffusion components (a recipe's ``with:`` blocks). Light: no torch, no diffusers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from defectkit.options import StrictOptions

# -- model backends -------------------------------------------------------------------------------------------


class BackendConfig(StrictOptions):
    """A diffusers pipeline family: which weights, precision, device and memory options."""

    model: str = Field("", description="hub id or local diffusers folder; empty: the family's official hub id")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="weights dtype; auto: bf16 on a GPU that supports it, else fp16 on GPU, fp32 on CPU"
    )
    device: str = Field("auto", description="auto (the step's device), cpu, cuda, cuda:1, mps")
    variant: str | None = Field(None, description="weights variant to load, e.g. fp16 (smaller download)")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    attention_slicing: bool = Field(False, description="compute attention in slices: less memory, slower")
    vae_slicing: bool = Field(False, description="decode a batch one image at a time: less memory")
    vae_tiling: bool = Field(False, description="decode large images in tiles: less memory")
    cpu_offload: Literal["none", "model", "sequential"] = Field(
        "none", description="model: whole models move to the GPU when used; sequential: layer by layer (least memory)"
    )
    channels_last: bool = Field(True, description="channels_last memory format for the UNet/VAE on GPU (faster convs)")
    compile: bool = Field(False, description="torch.compile the denoiser (UNet/transformer): slow first call")
    compile_mode: str = Field("max-autotune-no-cudagraphs", description="torch.compile mode when compile is on")


# -- schedulers -----------------------------------------------------------------------------------------------


class SchedulerConfig(StrictOptions):
    """Options passed to ``XScheduler.from_config(pipe.scheduler.config, **options)`` (only those set)."""

    timestep_spacing: Literal["linspace", "leading", "trailing"] | None = Field(
        None, description="how inference timesteps are spread (trailing with rescale_betas_zero_snr)"
    )
    rescale_betas_zero_snr: bool | None = Field(
        None, description="rescale the noise schedule to zero terminal SNR (Lin et al. 2023)"
    )
    prediction_type: Literal["epsilon", "v_prediction", "sample"] | None = Field(
        None, description="what the model predicts; keep the backend's unless the weights say otherwise"
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="any other constructor argument of the diffusers scheduler class"
    )


class UniPCConfig(SchedulerConfig):
    solver_order: int | None = Field(None, ge=1, le=3, description="UniPC order (2 for guided sampling)")


class DPMSolverConfig(SchedulerConfig):
    use_karras_sigmas: bool | None = Field(
        None, description="Karras et al. sigma spacing; on unless set false (DPM++ 2M Karras); not with SD3"
    )
    solver_order: int | None = Field(None, ge=1, le=3, description="solver order (2, the default: DPM++ 2M)")


class DDIMConfig(SchedulerConfig):
    pass


class EulerConfig(SchedulerConfig):
    use_karras_sigmas: bool | None = Field(None, description="Karras et al. sigma spacing")


class LCMConfig(SchedulerConfig):
    pass


# -- ControlNet modalities ------------------------------------------------------------------------------------


class ModalityConfig(StrictOptions):
    """A ControlNet modality: its preprocessor and, per backend family, its ControlNet weights."""

    controlnet: str | None = Field(
        None, description="ControlNet hub id or local folder; empty: this modality's default for the backend family"
    )
    variant: str | None = Field(None, description="ControlNet weights variant, e.g. fp16")


class CannyConfig(ModalityConfig):
    low_threshold: int = Field(100, ge=0, le=255, description="cv2.Canny hysteresis low threshold")
    high_threshold: int = Field(200, ge=0, le=255, description="cv2.Canny hysteresis high threshold")


class SoftEdgeConfig(ModalityConfig):
    annotator: Literal["auto", "hed", "pidinet", "sobel"] = Field(
        "auto",
        description="hed/pidinet: controlnet_aux annotators (weights from annotator_model); sobel: weight-free "
        "Gaussian + Sobel soft edges; auto: hed when its weights load, else sobel",
    )
    annotator_model: str = Field("lllyasviel/Annotators", description="hub id or folder of the annotator weights")
    sigma: float = Field(1.5, gt=0.0, description="sobel: Gaussian blur before the gradient (px)")


class DepthConfig(ModalityConfig):
    estimator: str = Field(
        "Intel/dpt-hybrid-midas", description="transformers depth-estimation model: hub id or local folder"
    )


class NormalConfig(DepthConfig):
    normals: Literal["auto", "marigold", "depth"] = Field(
        "auto",
        description="marigold: a real normal estimator (diffusers' MarigoldNormalsPipeline, normals_model); depth: "
        "normals from the gradients of the estimated depth (weight-light); auto: marigold where its weights load",
    )
    normals_model: str = Field("prs-eth/marigold-normals-v1-1", description="Marigold normals: hub id or local folder")
    normals_steps: int | None = Field(None, ge=1, description="Marigold denoising steps (empty: the model's default)")
    background_threshold: float = Field(
        0.1, ge=0.0, le=1.0, description="depth (0-1) below which a pixel is background with a flat normal"
    )


class FlowMatchConfig(SchedulerConfig):
    shift: float | None = Field(None, gt=0.0, description="timestep shift (SD3 medium: 3.0); empty: the model's")


# -- the generate step ----------------------------------------------------------------------------------------

TEMPLATE_FIELDS = {"token", "defect_type", "object_class"}


def _check_component(kind: str, ref: ComponentRef) -> ComponentRef:
    """Validate a nested ``{use, with}`` against the registry and the component's own options model."""
    from pydantic import ValidationError

    from defectkit.errors import RegistryError
    from defectkit.plugins import get_registry

    try:
        component = get_registry().get(kind, ref.use)
    except RegistryError as exc:
        raise ValueError(f"use: {exc}") from None
    try:
        config = component.build_config(ref.with_)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ValueError(f"with.{where}: {error['msg']}" if where else f"with: {error['msg']}") from None
    if isinstance(config, BaseModel):
        # every option with its default: what --print-config and recipe.resolved.yaml show
        ref.with_ = config.model_dump(mode="json")
    return ref


def _check_template(value: str) -> str:
    import string

    names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    unknown = names - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; use {', '.join(sorted(TEMPLATE_FIELDS))}")
    return value


class ComponentRef(StrictOptions):
    """A nested component: ``{use: NAME, with: {...}}``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    use: str = Field(description="the component's name (see `defectkit plugins`)")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="the component's options")


class ControlRef(ComponentRef):
    """A ControlNet in the generate step: a modality, its options, and how strongly it steers."""

    scale: float = Field(1.0, ge=0.0, le=2.0, description="controlnet_conditioning_scale of this ControlNet")
    start: float = Field(0.0, ge=0.0, le=1.0, description="share of the steps before this ControlNet starts")
    end: float = Field(1.0, ge=0.0, le=1.0, description="share of the steps after which it stops")


class GenerateConfig(StrictOptions):
    """The ``stable_diffusion`` generator: N images per defect class (see docs/generation.md)."""

    backend: ComponentRef = Field(
        default_factory=lambda: ComponentRef(use="sd15"), description="model_backend: {use: sd15|sdxl|sd3|..., with}"
    )
    scheduler: ComponentRef | None = Field(
        default_factory=lambda: ComponentRef(use="unipc"),
        description="scheduler: {use: unipc|dpmpp_2m|ddim|..., with}; null keeps the backend's own",
    )
    controlnets: list[ControlRef] = Field(
        default_factory=list, description="ControlNets: [{use: softedge|depth|canny|normal, scale, with}]"
    )
    images_per_class: int = Field(8, ge=1, description="images generated per defect class")
    defect_types: list[str] = Field(
        default_factory=list, description="classes to generate; empty: every defect type of source_split"
    )
    object_class: str = Field("", description="the {object_class} of prompts; empty: the dataset's category")
    source_split: str = Field("gen_train", description="real defect images the control images (and captions) come from")
    prompts: Literal["auto", "captions", "template"] = Field(
        "auto", description="captions: the captions artifact; template: the template; auto: captions when present"
    )
    template: str = Field(
        "a photo of {token} {defect_type} defect on {object_class} surface, industrial inspection image",
        description="prompt template; {token} is the adapter's token of the class (empty without one)",
    )
    templates_per_class: dict[str, str] = Field(default_factory=dict, description="a template per defect class")
    negative_prompt: str = Field(
        "blurry, low quality, cartoon, drawing, text, watermark, colorful, people", description="negative prompt"
    )
    steps: int = Field(20, ge=1, le=1000, description="denoising steps")
    guidance: float = Field(7.5, ge=0.0, description="classifier-free guidance scale")
    guidance_per_class: dict[str, float] = Field(
        default_factory=dict, description="guidance scale per defect class (others use guidance)"
    )
    guidance_rescale: float = Field(
        0.0, ge=0.0, le=1.0, description="CFG rescale (Lin et al. 2023; 0.7 is typical; sd15/sdxl only)"
    )
    width: int | None = Field(None, ge=8, description="image width; empty: the backend's resolution")
    height: int | None = Field(None, ge=8, description="image height; empty: the backend's resolution")
    strength: float = Field(1.0, gt=0.0, le=1.0, description="inpainting backends: how much of the masked area changes")
    batch_size: int = Field(4, ge=1, description="images per pipeline call (per process)")
    seed: int | None = Field(None, description="first image's seed (image i gets seed + i); empty: the recipe seed")
    adapter: str = Field(
        "auto", description="auto: the adapter artifact of an earlier train step if any; off; or an adapter folder"
    )
    lora_scale: float = Field(1.0, ge=0.0, le=2.0, description="strength of the adapter's LoRA/DoRA")
    contact_sheet: bool = Field(True, description="write contact_sheet.png (one row per class)")

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: ComponentRef) -> ComponentRef:
        return _check_component("model_backend", value)

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: ComponentRef | None) -> ComponentRef | None:
        return None if value is None else _check_component("scheduler", value)

    @field_validator("controlnets")
    @classmethod
    def _controlnets(cls, value: list[ControlRef]) -> list[ControlRef]:
        for index, ref in enumerate(value):
            try:
                _check_component("controlnet_modality", ref)
            except ValueError as exc:
                raise ValueError(f"[{index}].{exc}") from None
            if ref.end <= ref.start:
                raise ValueError(f"[{index}]: end ({ref.end}) must be after start ({ref.start})")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("templates_per_class")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for key, template in value.items():
            try:
                _check_template(template)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value
