"""The pieces of a Stable Diffusion pipeline a trainer needs, whatever the family.

A :class:`Backbone` is taken from the pipeline a ``model_backend`` component
loads (``sd15``, ``sdxl``, ``sd3``, from the diffusion plugin): the denoiser
(UNet or SD3 transformer), the VAE, the text encoders and their tokenizers,
and a training noise scheduler. Prompts are encoded with the pipeline's own
``encode_prompt``, so training sees exactly the conditioning generation will
(multi-vector textual-inversion tokens expanded the same way, SDXL's two
encoders and pooled embedding, SD3's three).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from defectkit.errors import DefectkitError

FAMILIES = ("sd15", "sdxl", "sd3")


@dataclass
class Backbone:
    """A loaded diffusers pipeline taken apart for training: its denoiser, VAE, text encoders, tokenizers
    and noise scheduler, with the conditioning and prediction calls of its ``family`` (sd15, sdxl, sd3)."""

    family: str
    pipeline: Any
    denoiser: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list[torch.nn.Module]
    tokenizers: list[Any]
    noise_scheduler: Any

    @property
    def flow_matching(self) -> bool:
        return self.family == "sd3"

    @property
    def clip_encoders(self) -> list[tuple[torch.nn.Module, Any]]:
        """(text encoder, tokenizer) pairs that take textual-inversion tokens and LoRA (CLIP, not T5)."""
        pairs = list(zip(self.text_encoders, self.tokenizers, strict=True))
        return pairs[:2]

    # -- conditioning -------------------------------------------------------------------

    def encode_prompts(self, prompts: list[str], device) -> dict[str, torch.Tensor]:
        """Text conditioning of a batch: ``embeds`` (and ``pooled`` for SDXL/SD3)."""
        pipe = self.pipeline
        if self.family == "sd15":
            embeds, _ = pipe.encode_prompt(prompts, device, 1, False)
            return {"embeds": embeds}
        if self.family == "sdxl":
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            return {"embeds": embeds, "pooled": pooled}
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, prompt_3=None, device=device, do_classifier_free_guidance=False
        )
        return {"embeds": embeds, "pooled": pooled}

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: dict[str, torch.Tensor], time_ids):
        """The denoiser's output for a noisy latent batch."""
        if self.family == "sd15":
            return self.denoiser(noisy, timesteps, text["embeds"], return_dict=False)[0]
        if self.family == "sdxl":
            added = {"text_embeds": text["pooled"], "time_ids": time_ids}
            return self.denoiser(noisy, timesteps, text["embeds"], added_cond_kwargs=added, return_dict=False)[0]
        return self.denoiser(
            hidden_states=noisy,
            timestep=timesteps,
            encoder_hidden_states=text["embeds"],
            pooled_projections=text["pooled"],
            return_dict=False,
        )[0]

    # -- latents -------------------------------------------------------------------------

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[-1, 1]`` images -> the VAE posterior's (mean, std), already scaled (and shifted for SD3)."""
        dist = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
        scale = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((dist.mean - shift) * scale).float(), (dist.std * scale).float()

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`encode_images`: scaled latents -> ``[-1, 1]`` images (differentiable)."""
        scale = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return self.vae.decode((latents / scale + shift).to(self.vae.dtype)).sample.float()


def load_backbone(backend: str, model: str, device, inpainting: bool = False) -> Backbone:
    """Load ``model`` through the ``model_backend`` component ``backend``; fp32 weights, all frozen.

    ``inpainting=True``: the backend must be an inpainting one (a 9-channel UNet: noisy latent, mask,
    masked-image latent), as the DefectFill trainer needs; else it must not be.
    """
    from defectkit.plugins import get_registry

    component = get_registry().get("model_backend", backend)  # unknown names answer with the choices
    handle = component.create({"model": model, "dtype": "fp32"})
    family = getattr(handle, "family", None)
    if family not in FAMILIES:
        raise DefectkitError(f"backend {backend!r}: family {family!r} is not one of {', '.join(FAMILIES)}")
    if inpainting and not getattr(handle, "inpainting", False):
        raise DefectkitError(
            f"backend {backend!r}: not an inpainting model; use sd2_inpainting, sd15_inpainting or sdxl_inpainting"
        )
    if not inpainting and getattr(handle, "inpainting", False):
        raise DefectkitError(
            f"backend {backend!r}: an inpainting model takes a masked image as extra UNet input; these trainers "
            "fine-tune text-to-image models: use the plain sd15/sdxl/sd3 backend"
        )
    pipe = handle.load_pipeline(device=device)
    return backbone_from_pipeline(pipe, family, inpainting=inpainting)


def backbone_from_pipeline(pipe, family: str, inpainting: bool = False) -> Backbone:
    """A :class:`Backbone` over an already loaded diffusers pipeline of ``family``.

    ``inpainting=True`` expects the inpainting UNet (latent + mask + masked latent channels).
    """
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    if family == "sd3":
        denoiser = pipe.transformer
        encoders = [pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3]
        tokenizers = [pipe.tokenizer, pipe.tokenizer_2, pipe.tokenizer_3]
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    else:
        denoiser = pipe.unet
        latent = getattr(pipe.vae.config, "latent_channels", 4)
        if inpainting and getattr(denoiser.config, "in_channels", 4) != 2 * latent + 1:
            raise DefectkitError(
                f"the loaded UNet takes {denoiser.config.in_channels} input channels, an inpainting UNet "
                f"{2 * latent + 1}; load an inpainting model"
            )
        if not inpainting and getattr(denoiser.config, "in_channels", 4) != latent:
            raise DefectkitError(
                "the loaded UNet takes more input channels than the VAE gives (an inpainting UNet); "
                "fine-tune a text-to-image model"
            )
        encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
        tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if family == "sdxl" else [])
        # the pipeline's sampler (PNDM, Euler, UniPC) is for inference; training adds noise the DDPM way
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    # SD3 without T5 (text_encoder_3=None) is a supported, lighter configuration
    pairs = [(e, t) for e, t in zip(encoders, tokenizers, strict=True) if e is not None]
    for module in [denoiser, pipe.vae, *(e for e, _ in pairs)]:
        module.requires_grad_(False)
    return Backbone(
        family=family,
        pipeline=pipe,
        denoiser=denoiser,
        vae=pipe.vae,
        text_encoders=[e for e, _ in pairs],
        tokenizers=[t for _, t in pairs],
        noise_scheduler=scheduler,
    )
