"""Anomaly maps from a batch of reconstructions, entirely on the device (no per-image scipy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MapSettings:
    """The paper's post-processing constants (see :class:`defectkit_decodiff.config.DecoDiffDetectConfig`)."""

    image_clip: float = 0.4
    image_sigma: float = 3.0
    latent_clip: float = 0.2
    latent_sigma: float = 1.0
    gate_sigma: float = 2.0
    gate_weight: float = 0.4


def _symmetric_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    # scipy.ndimage's default "reflect" mode (d c b a | a b c d), for any radius
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, H, W]`` maps, equal to ``scipy.ndimage.gaussian_filter`` per map."""
    if sigma <= 0:
        return maps
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    height, width = maps.shape[-2:]
    x = maps[:, None]
    x = x.index_select(2, _symmetric_index(height, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = x.index_select(3, _symmetric_index(width, radius, maps.device))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x[:, 0]


def _linear_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    source = (torch.arange(size, device=x.device, dtype=torch.float64) + 0.5) * (n / size) - 0.5
    low = source.floor()
    frac = (source - low).to(x.dtype)
    low = low.long()

    def mirror(i: torch.Tensor) -> torch.Tensor:
        # skimage's "reflect" is ndimage's "mirror" (d c b | a b c d); a single pixel mirrors onto itself
        if n == 1:
            return torch.zeros_like(i)
        i = i.abs() % (2 * n - 2)
        return torch.where(i >= n, 2 * n - 2 - i, i)

    shape = [1] * x.dim()
    shape[dim] = size
    frac = frac.view(shape)
    return x.index_select(dim, mirror(low)) * (1 - frac) + x.index_select(dim, mirror(low + 1)) * frac


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B, H, W]`` maps, equal to skimage's ``resize(map, size)`` when enlarging.

    (The seed's latent maps are enlarged with skimage's default order-1, mirrored-border resize;
    ``F.interpolate`` clamps at the border instead and differs there by up to a pixel's step.)
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return _linear_axis(_linear_axis(maps, size[0], 1), size[1], 2)


def geometric_maps(
    images: torch.Tensor,
    reconstructed_images: torch.Tensor,
    latents: torch.Tensor,
    reconstructed_latents: torch.Tensor,
    settings: MapSettings,
) -> torch.Tensor:
    """``sqrt(image map x latent map)`` at the image size, ``[B, H, W]``.

    Image map: channel max of ``|x_hat - x|``, clipped at ``image_clip``, scaled to
    [0, 1], blurred. Latent map: channel mean of ``|z_hat - z|``, clipped at
    ``latent_clip``, scaled, blurred at latent resolution, resized to the image.
    """
    image_map = (reconstructed_images - images).abs().amax(dim=1).float()
    image_map = gaussian_blur(image_map.clamp(0.0, settings.image_clip) / settings.image_clip, settings.image_sigma)
    latent_map = (reconstructed_latents - latents).abs().mean(dim=1).float()
    latent_map = gaussian_blur(
        latent_map.clamp(0.0, settings.latent_clip) / settings.latent_clip, settings.latent_sigma
    )
    latent_map = resize_maps(latent_map, tuple(image_map.shape[-2:]))
    # blur can leave tiny negative rounding on zero maps; sqrt of them would be NaN
    return (image_map * latent_map).clamp_min(0.0).sqrt()


def fuse_gate(geometric: torch.Tensor, gate: torch.Tensor, settings: MapSettings) -> torch.Tensor:
    """``(1 - w) * geometric + w * gate map``: the DoD gate (channel mean) resized to the map and blurred."""
    gate_map = resize_maps(gate.float().mean(dim=1), tuple(geometric.shape[-2:]))
    gate_map = gaussian_blur(gate_map, settings.gate_sigma)
    return (1 - settings.gate_weight) * geometric + settings.gate_weight * gate_map
