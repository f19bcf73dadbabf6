"""What the trainer and detector share: preprocessing, the latent codec, the checkpoint, the classifier."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from defectkit.data import Sample
from defectkit.errors import DefectkitError
from defectkit.io import atomic_dir
from defectkit.tensorfile import load_tensors
from defectkit_decodiff.config import DecoDiffModelConfig
from defectkit_decodiff.diffusion import cosine_alphas_cumprod
from defectkit_decodiff.unet import DeviationUNet, UNetSettings

MODEL_FILE = "model.safetensors"
CLASSIFIER_FILE = "classifier.safetensors"
TRAINING_FILE = "training.pt"
META_FILE = "meta.json"
#: the classifier sees images at this size: the category of an object is obvious far below 256 px
CLASSIFIER_SIZE = 64


def prepare_image(image: Image.Image, image_size: int, crop_size: int) -> np.ndarray:
    """RGB, resized to ``image_size`` then centre-cropped to ``crop_size``: ``uint8 [C, C, 3]``."""
    start = (image_size - crop_size) // 2
    resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized.crop((start, start, start + crop_size, start + crop_size)))


def load_images(samples: Sequence[Sample], image_size: int, crop_size: int) -> np.ndarray:
    """The samples' images through :func:`prepare_image`: ``uint8 [B, C, C, 3]``."""
    return np.stack([prepare_image(s.load_image(), image_size, crop_size) for s in samples])


def to_model_range(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 [B, H, W, 3]`` -> ``float [B, 3, H, W]`` in [-1, 1] (the VAE's and the paper's normalisation)."""
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def crop_mask(mask: np.ndarray, image_size: int, crop_size: int) -> np.ndarray:
    """A ground-truth mask through the same resize and crop as its image (nearest: the mask stays exact)."""
    start = (image_size - crop_size) // 2
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((image_size, image_size), Image.Resampling.NEAREST)
    return np.asarray(image.crop((start, start, start + crop_size, start + crop_size))) > 127


class LatentCodec:
    """The space the diffusion runs in: a frozen ``AutoencoderKL`` latent, or the pixels themselves.

    Pixel space folds ``pixel_patch`` x ``pixel_patch`` blocks into channels: lossless (decoding is
    exact), and the UNet works on a grid ``pixel_patch`` times smaller, which is what makes CPU training fit.
    """

    def __init__(self, config: DecoDiffModelConfig, device: torch.device, vae: nn.Module | None = None) -> None:
        """``vae``: an ``AutoencoderKL`` already built (benchmarks); by default ``config.vae_id`` is loaded."""
        self.kind, self.scale, self.device = config.latent, config.latent_scale, device
        self.patch = config.pixel_patch
        self.vae = None
        self.channels = 3 * self.patch**2
        if config.latent == "vae":
            if vae is None:
                from diffusers import AutoencoderKL

                vae = AutoencoderKL.from_pretrained(config.vae_id)
            self.vae = vae.to(device).eval().requires_grad_(False)
            self.channels = int(self.vae.config.latent_channels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> latents (the posterior mean times the scale, as the paper)."""
        if self.vae is None:
            return F.pixel_unshuffle(images, self.patch)
        return self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean.float() * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.vae is None:
            return F.pixel_shuffle(latents, self.patch)
        return self.vae.decode((latents / self.scale).to(self.vae.dtype)).sample.float()


class CategoryClassifier(nn.Module):
    """A small CNN telling the object category from a 64 px image, for multi-class inference."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] of any size -> class logits."""
        return self.head(self.features(F.interpolate(images, size=(CLASSIFIER_SIZE,) * 2, mode="area")))


@dataclass
class Checkpoint:
    """A loaded checkpoint folder: the model options, categories, UNet and (optional) classifier."""

    config: DecoDiffModelConfig
    classes: list[str]
    in_channels: int
    step: int
    unet: DeviationUNet
    classifier: CategoryClassifier | None

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return cosine_alphas_cumprod(self.config.diffusion_steps)


def build_unet(config: DecoDiffModelConfig, in_channels: int, num_classes: int) -> DeviationUNet:
    return DeviationUNet(UNetSettings.from_config(config, in_channels, num_classes))


def save_checkpoint(
    path: Path,
    config: DecoDiffModelConfig,
    classes: list[str],
    in_channels: int,
    step: int,
    unet: nn.Module,
    training_state: dict,
    classifier: nn.Module | None = None,
) -> None:
    """Write the folder atomically: a resumed run or a detector never sees half a checkpoint."""
    from safetensors.torch import save_file

    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}, tmp / MODEL_FILE)
        if classifier is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()}, tmp / CLASSIFIER_FILE
            )
        torch.save(training_state, tmp / TRAINING_FILE)
        meta = {
            "format": "defectkit-decodiff/1",
            "model": config.model_dump(include=set(DecoDiffModelConfig.model_fields)),
            "classes": classes,
            "in_channels": in_channels,
            "step": step,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))


def read_meta(path: Path) -> dict:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise DefectkitError(f"decodiff: {path} is not a decodiff checkpoint folder (no {META_FILE}); train first")
    return json.loads(meta_path.read_text())


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint folder for inference (the UNet in eval mode on ``device``)."""

    meta = read_meta(path)
    # checkpoints written before the `attention` option were all built with the light block
    config = DecoDiffModelConfig(**{"attention": "light", **meta["model"]})
    unet = build_unet(config, meta["in_channels"], len(meta["classes"]))
    unet.load_state_dict(load_tensors(path / MODEL_FILE))
    classifier = None
    if (path / CLASSIFIER_FILE).is_file():
        classifier = CategoryClassifier(len(meta["classes"]))
        classifier.load_state_dict(load_tensors(path / CLASSIFIER_FILE))
        classifier.to(device).eval()
    return Checkpoint(config, meta["classes"], meta["in_channels"], meta["step"], unet.to(device).eval(), classifier)


def load_training_state(path: Path) -> dict:
    """Optimizer, scheduler and step of a checkpoint (tensors and plain types only: weights_only)."""
    return load_tensors(path / TRAINING_FILE)
