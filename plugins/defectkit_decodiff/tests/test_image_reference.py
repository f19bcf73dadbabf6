"""The image map compares two decodes (corrected and clean latent), as the official evaluation does."""

import torch

from defectkit_decodiff import detector
from defectkit_decodiff.config import DecoDiffDetectConfig, DecoDiffModelConfig
from defectkit_decodiff.model import Checkpoint


class LossyCodec:
    """An identity 'VAE' whose decoder always brightens the top-left quarter: a reconstruction error of its own."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        out = latents.clone()
        out[..., :16, :16] += 0.3
        return out


def maps_for(reference: str, monkeypatch) -> torch.Tensor:
    # the "correction" moves every latent pixel alike, so only the decoder's own error can make a region stand out
    monkeypatch.setattr(detector, "ddim_deviation_sample", lambda unet, latents, *args, **kwargs: (latents + 0.1, None))
    checkpoint = Checkpoint(DecoDiffModelConfig(), ["tile"], 3, 0, torch.nn.Identity(), None)
    config = DecoDiffDetectConfig(image_reference=reference, image_sigma=0.0, latent_sigma=0.0)
    scorer = detector.AnomalyScorer(checkpoint, config, torch.device("cpu"), codec=LossyCodec())
    images = torch.zeros(2, 3, 32, 32)
    maps, _ = scorer.score(images, torch.zeros(2, dtype=torch.long))
    return maps


def test_decoded_reference_cancels_the_decoders_own_error(monkeypatch):
    maps = maps_for("decoded", monkeypatch)
    assert torch.allclose(maps, maps[0, 20, 20].expand_as(maps), atol=1e-5)  # flat: nothing to find


def test_input_reference_carries_the_decoders_error(monkeypatch):
    maps = maps_for("input", monkeypatch)
    assert maps[:, :16, :16].min() > maps[:, 16:, 16:].max() + 0.1
