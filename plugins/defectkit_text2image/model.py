"""The model: a pixel-space ``UNet2DConditionModel``, a ``CLIPTextModel`` and a CLIP BPE tokenizer, from configs.

No VAE: images are small (32-64 px), so the UNet works on pixels, which is what
lets the quickstart train one on a CPU in about a minute. The tokenizer is
CLIP's BPE built from the vocabulary open_clip ships (no hub download).

A trained model is a folder that loads back with ``from_pretrained``::

    MODEL/
      text2image.json       classes, prompt template, resolution, channels, trainer options
      unet/                 the exported UNet (the EMA weights when EMA was on)
      unet_raw/             the last trained weights (only when EMA was on)
      text_encoder/         likewise, EMA weights
      text_encoder_raw/
      tokenizer/  scheduler/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from defectkit import io as dkio
from defectkit.errors import DefectkitError
from defectkit_text2image.config import ModelConfig, Text2ImageTrainConfig

INFO = "text2image.json"


@dataclass
class TextToImage:
    """The three trained parts and the noise scheduler, plus what generation needs to know."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    info: dict[str, Any]

    @property
    def channels(self) -> int:
        return int(self.info["channels"])

    @property
    def resolution(self) -> int:
        return int(self.info["resolution"])

    def tokenize(self, prompts: list[str], device) -> torch.Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=int(self.info["max_tokens"]),
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return ids.to(device)

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(ids).last_hidden_state

    def modules(self) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({"unet": self.unet, "text_encoder": self.text_encoder})


def build_tokenizer(merges: int, max_tokens: int):
    # the same builder the diffusion plugin's tests use: CLIP's BPE from open_clip's shipped vocabulary
    from defectkit_diffusion.tiny import tiny_clip_tokenizer

    return tiny_clip_tokenizer(merges=merges, model_max_length=max_tokens)


def build_scheduler(config: Text2ImageTrainConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        # pixels in [-1, 1]: clipping the predicted clean image keeps a sample in range
        clip_sample=True,
    )


def build_model(config: Text2ImageTrainConfig, channels: int, info: dict[str, Any]) -> TextToImage:
    """Random UNet and text encoder from ``config.model`` (seed them before calling)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    m: ModelConfig = config.model
    tokenizer = build_tokenizer(m.tokenizer_merges, m.max_tokens)
    vocab = len(tokenizer)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=m.text_hidden,
            intermediate_size=m.text_hidden * 4,
            num_hidden_layers=m.text_layers,
            num_attention_heads=m.text_heads,
            max_position_embeddings=m.max_tokens,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in m.attention_levels)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(m.attention_levels))
    unet = UNet2DConditionModel(
        sample_size=config.resolution,
        in_channels=channels,
        out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(m.channels),
        layers_per_block=m.layers_per_block,
        attention_head_dim=m.attention_head_dim,
        norm_num_groups=m.norm_groups,
        cross_attention_dim=m.text_hidden,
        # no attention in the middle block unless the deepest level has it
        mid_block_type="UNetMidBlock2DCrossAttn" if m.attention_levels[-1] else None,
        addition_embed_type="text" if m.pooled_text else None,
        addition_embed_type_num_heads=m.text_heads,
    )
    return TextToImage(unet, text_encoder, tokenizer, build_scheduler(config), info)


def load_model(folder: str | Path, weights: str = "ema", device=None) -> TextToImage:
    """Load a model folder written by the trainer; ``weights="raw"`` takes the last trained weights."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    info = dkio.read_json(folder / INFO)
    if info is None:
        raise DefectkitError(f"{folder}: no {INFO}; not a model written by the text2image_scratch trainer")
    suffix = ""
    if weights == "raw" and (folder / "unet_raw").is_dir():
        suffix = "_raw"
    elif weights == "raw":
        log_note = "trained without EMA" if not info.get("ema") else "missing unet_raw/"
        raise DefectkitError(f"{folder}: has no raw weights ({log_note}); use weights: ema")
    unet = UNet2DConditionModel.from_pretrained(folder / f"unet{suffix}")
    text_encoder = CLIPTextModel.from_pretrained(folder / f"text_encoder{suffix}")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    model = TextToImage(unet, text_encoder, tokenizer, scheduler, info)
    if device is not None:
        model.modules().to(device)
    model.modules().eval()
    return model
