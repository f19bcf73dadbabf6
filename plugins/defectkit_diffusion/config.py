"""Options of the diffusion components (a recipe's ``with:`` blocks). Light: no torch, no diffusers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # a misspelt option is an error naming the key, never silently ignored
    model_config = ConfigDict(extra="forbid")


# -- model backends -------------------------------------------------------------------------------------------


class BackendConfig(_Strict):
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


class SchedulerConfig(_Strict):
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
    use_karras_sigmas: bool = Field(True, description="Karras et al. sigma spacing (DPM++ 2M Karras)")
    solver_order: int = Field(2, ge=1, le=3, description="solver order (2: DPM++ 2M)")


class DDIMConfig(SchedulerConfig):
    pass


class EulerConfig(SchedulerConfig):
    use_karras_sigmas: bool | None = Field(None, description="Karras et al. sigma spacing")


class LCMConfig(SchedulerConfig):
    pass


# -- ControlNet modalities ------------------------------------------------------------------------------------


class ModalityConfig(_Strict):
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
    background_threshold: float = Field(
        0.1, ge=0.0, le=1.0, description="depth (0-1) below which a pixel is background with a flat normal"
    )
