"""Model backends: one diffusers pipeline family each, loaded by hub id or local folder.

``registry.get("model_backend", "sdxl").create(options)`` returns a
:class:`DiffusionBackend`; ``backend.load_pipeline()`` gives the diffusers
pipeline with the dtype, device and memory options applied. The pipeline class
follows the family, ``inpainting`` and whether ControlNets are given (see
:data:`PIPELINE_CLASSES`); diffusers ignores the class named in a folder's
``model_index.json`` when a specific class loads it, so a text-to-image folder
also loads as its ControlNet pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError
from defectkit_diffusion.config import BackendConfig

log = logging.getLogger(__name__)

#: (family, inpainting, with ControlNet) -> diffusers pipeline class name
PIPELINE_CLASSES: dict[tuple[str, bool, bool], str] = {
    ("sd15", False, False): "StableDiffusionPipeline",
    ("sd15", False, True): "StableDiffusionControlNetPipeline",
    ("sd15", True, False): "StableDiffusionInpaintPipeline",
    ("sd15", True, True): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", False, False): "StableDiffusionXLPipeline",
    ("sdxl", False, True): "StableDiffusionXLControlNetPipeline",
    ("sdxl", True, False): "StableDiffusionXLInpaintPipeline",
    ("sdxl", True, True): "StableDiffusionXLControlNetInpaintPipeline",
    ("sd3", False, False): "StableDiffusion3Pipeline",
    ("sd3", False, True): "StableDiffusion3ControlNetPipeline",
}


@dataclass(frozen=True)
class BackendSpec:
    """What distinguishes one backend component from another."""

    name: str
    family: str  # sd15 | sdxl | sd3: the pipeline classes and text encoders
    inpainting: bool
    default_model: str
    #: the family ControlNet weights must match: SD 2 shares SD 1.5's pipeline classes but not its UNet
    controlnet_family: str
    #: the resolution the weights were trained at (the generate step's default size)
    resolution: int


SPECS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec("sd15", "sd15", False, "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15", 512),
        BackendSpec("sdxl", "sdxl", False, "stabilityai/stable-diffusion-xl-base-1.0", "sdxl", 1024),
        BackendSpec("sd3", "sd3", False, "stabilityai/stable-diffusion-3-medium-diffusers", "sd3", 1024),
        BackendSpec("sd15_inpainting", "sd15", True, "stable-diffusion-v1-5/stable-diffusion-inpainting", "sd15", 512),
        BackendSpec("sd2_inpainting", "sd15", True, "stabilityai/stable-diffusion-2-inpainting", "sd2", 512),
        BackendSpec("sdxl_inpainting", "sdxl", True, "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", "sdxl", 1024),
    )
}


def resolve_dtype(name: str, device):
    """The torch dtype for ``name`` (fp32/fp16/bf16/auto) on ``device``."""
    import torch

    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def checked_source(value: str, marker: str, what: str, fix: str) -> str:
    """``value`` as an existing folder holding ``marker``, or as a hub id; else one DefectkitError line.

    ``what`` names the option (``model_backend sdxl: model``), ``fix`` says what to do.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise DefectkitError(
                f"{what}={value!r} is a folder without {marker} (not saved with save_pretrained); {fix}"
            )
        return str(path)
    # a hub id is exactly "owner/name"; anything else (absolute, relative, deeper) is meant as a folder
    if path.exists() or value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") != 1:
        raise DefectkitError(f"{what}={value!r}: no such folder; {fix}")
    return value


def load_pretrained(cls, source: str, what: str, fix: str, **kwargs):
    """``cls.from_pretrained(source)``; a hub id that cannot be fetched becomes one DefectkitError line."""
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as exc:  # not cached while offline, no such repo, no network: all OSError in hf_hub
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise DefectkitError(
            f"{what}={source!r} (not a local folder, and not in the Hugging Face cache or the hub is "
            f"unreachable: {first}); {fix}"
        ) from None


class DiffusionBackend:
    """A Stable Diffusion family, ready to load (see docs/generation.md, "Backends")."""

    def __init__(self, config: BackendConfig | None, spec: BackendSpec) -> None:
        self.config = config or BackendConfig()
        self.spec = spec
        self.name = spec.name
        self.family = spec.family
        self.inpainting = spec.inpainting
        self.controlnet_family = spec.controlnet_family
        self.resolution = spec.resolution
        #: the option path a user sets to point the backend elsewhere; the generate step makes it exact
        self.set_hint = "...backend.with.model"

    @property
    def model(self) -> str:
        """The hub id or folder this backend loads."""
        return self.config.model or self.spec.default_model

    # -- where the weights come from ----------------------------------------------------------------------

    def _fix(self) -> str:
        return f"give a downloaded diffusers folder with --set {self.set_hint}=/local/folder"

    def source(self) -> str:
        """The checked model location: an existing diffusers folder, or a hub id (checked when loading)."""
        return checked_source(self.model, "model_index.json", f"model_backend {self.name}: model", self._fix())

    def from_pretrained(self, cls, source: str, what: str, **kwargs):
        """``cls.from_pretrained`` with hub/cache failures turned into one line naming the option."""
        return load_pretrained(cls, source, f"model_backend {self.name}: cannot load {what}", self._fix(), **kwargs)

    # -- loading ------------------------------------------------------------------------------------------

    def device(self, device: Any = None):
        """The device the pipeline runs on: the argument, else the ``device`` option, else auto."""
        return resolve_device(device if device not in (None, "auto") else self.config.device, mps=True)

    def dtype(self, device: Any = None):
        return resolve_dtype(self.config.dtype, self.device(device))

    def pipeline_class(self, controlnet: bool = False):
        import diffusers

        key = (self.family, self.inpainting, controlnet)
        if key not in PIPELINE_CLASSES:
            raise DefectkitError(f"model_backend {self.name}: ControlNet is not available for inpainting {self.family}")
        return getattr(diffusers, PIPELINE_CLASSES[key])

    def denoiser_name(self) -> str:
        """The attribute of the pipeline that denoises: ``transformer`` for SD3, else ``unet``."""
        return "transformer" if self.family == "sd3" else "unet"

    def load_pipeline(self, device: Any = None, controlnets: Any = None, compile: bool = True):
        """The diffusers pipeline with this backend's options applied.

        ``controlnets``: a ControlNet model or a list of them (loaded, e.g. by a
        ``controlnet_modality``); the ControlNet variant of the pipeline is built
        around them (a list of several becomes diffusers' multi-ControlNet).
        ``compile=False``: leave the ``compile`` option to the caller (``backend.compile(pipe)``),
        for callers that load LoRA weights first.
        """

        source = self.source()
        target = self.device(device)
        dtype = self.dtype(device)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if self.config.variant:
            kwargs["variant"] = self.config.variant
        if self.config.revision:
            kwargs["revision"] = self.config.revision
        if controlnets is not None:
            nets = list(controlnets) if isinstance(controlnets, (list, tuple)) else [controlnets]
            kwargs["controlnet"] = nets[0] if len(nets) == 1 else nets
        if self.family == "sd15":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        cls = self.pipeline_class(controlnet=controlnets is not None)
        pipe = self.from_pretrained(cls, source, "model", **kwargs)
        self.apply_options(pipe, target, compile=compile)
        log.info("loaded %s from %s (%s, %s, %s)", cls.__name__, source, target, dtype, self.config.cpu_offload)
        return pipe

    def apply_options(self, pipe, device, compile: bool = True) -> None:
        """Memory options, placement, memory format and compilation, in the order diffusers expects.

        ``compile=False`` leaves compilation to the caller (:meth:`compile`), e.g. after loading a LoRA.
        """
        import torch

        config = self.config
        if config.attention_slicing:
            pipe.enable_attention_slicing()
        if config.vae_slicing:
            pipe.vae.enable_slicing()
        if config.vae_tiling:
            pipe.vae.enable_tiling()
        denoiser = getattr(pipe, self.denoiser_name())
        if config.channels_last and device.type == "cuda" and self.family != "sd3":
            denoiser.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if config.cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif config.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
        if config.compile and compile:
            self.compile(pipe)
        pipe.set_progress_bar_config(disable=True)

    def compile(self, pipe) -> None:
        """``torch.compile`` the denoiser (after any LoRA is loaded: peft layers change the graph)."""
        import torch

        # fullgraph on the denoiser only: text encoders and the VAE run once per image, the denoiser per step
        denoiser = getattr(pipe, self.denoiser_name())
        setattr(pipe, self.denoiser_name(), torch.compile(denoiser, mode=self.config.compile_mode, fullgraph=True))

    def load_components(self, device: Any = None) -> dict[str, Any]:
        """The loaded parts (unet or transformer, vae, text encoders, tokenizers, scheduler) by name."""
        return dict(self.load_pipeline(device=device).components)

    def __repr__(self) -> str:
        return f"DiffusionBackend({self.name}, model={self.model!r}, dtype={self.config.dtype})"


def _factory(name: str):
    def create(config: BackendConfig | None = None) -> DiffusionBackend:
        return DiffusionBackend(config, SPECS[name])

    create.__name__ = f"{name}_backend"
    create.__doc__ = f"The {name} model backend (default model {SPECS[name].default_model})."
    return create


sd15_backend = _factory("sd15")
sdxl_backend = _factory("sdxl")
sd3_backend = _factory("sd3")
sd15_inpainting_backend = _factory("sd15_inpainting")
sd2_inpainting_backend = _factory("sd2_inpainting")
sdxl_inpainting_backend = _factory("sdxl_inpainting")
