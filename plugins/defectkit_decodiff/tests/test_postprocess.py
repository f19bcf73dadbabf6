"""The batched on-device maps equal the seed's per-image numpy/scipy/skimage post-processing."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

from defectkit_decodiff.postprocess import MapSettings, fuse_gate, gaussian_blur, geometric_maps, resize_maps


def reference_map(image, recon, latent, recon_latent, size):
    """The seed's loop body, one image at a time (numpy arrays ``[C, H, W]``)."""
    image_diff = np.abs(recon - image).transpose(1, 2, 0).max(axis=2)
    image_diff = gaussian_filter(np.clip(image_diff, 0.0, 0.4) * 2.5, sigma=3)
    latent_diff = np.abs(recon_latent - latent).transpose(1, 2, 0).mean(axis=2)
    latent_diff = gaussian_filter(np.clip(latent_diff, 0.0, 0.2) * 5, sigma=1)
    latent_diff = resize(latent_diff, (size, size))
    return np.sqrt(image_diff * latent_diff)


def test_batched_maps_equal_the_per_image_reference():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 64, 64, generator=generator, dtype=torch.float64) * 2 - 1
    recon = images + 0.3 * torch.randn(4, 3, 64, 64, generator=generator, dtype=torch.float64)
    latents = torch.randn(4, 4, 8, 8, generator=generator, dtype=torch.float64)
    recon_latents = latents + 0.2 * torch.randn(4, 4, 8, 8, generator=generator, dtype=torch.float64)
    ours = geometric_maps(images, recon, latents, recon_latents, MapSettings()).numpy()
    reference = np.stack(
        [reference_map(*(t[i].numpy() for t in (images, recon, latents, recon_latents)), 64) for i in range(4)]
    )
    assert ours.shape == (4, 64, 64)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.5, 2.0, 20.0])
def test_blur_and_resize_match_scipy_and_skimage(sigma):
    maps = torch.rand(3, 17, 23, dtype=torch.float64)
    expected = np.stack([gaussian_filter(m, sigma=sigma) for m in maps.numpy()])
    np.testing.assert_allclose(gaussian_blur(maps, sigma).numpy(), expected, atol=1e-10)
    expected = np.stack([resize(m, (40, 31)) for m in maps.numpy()])
    np.testing.assert_allclose(resize_maps(maps, (40, 31)).numpy(), expected, atol=1e-10)


def test_gated_fusion_is_point_six_geometric_plus_point_four_gate():
    geometric = torch.rand(2, 32, 32, dtype=torch.float64)
    gate = torch.rand(2, 4, 8, 8, dtype=torch.float64)
    fused = fuse_gate(geometric, gate, MapSettings(gate_sigma=2.0))
    gate_map = np.stack([gaussian_filter(resize(g.mean(axis=0), (32, 32)), sigma=2) for g in gate.numpy()])
    np.testing.assert_allclose(fused.numpy(), 0.6 * geometric.numpy() + 0.4 * gate_map, atol=1e-6)


def test_threshold_is_f1_adaptive_with_defects_else_a_normal_percentile():
    from defectkit_decodiff.detector import choose_threshold

    chosen = choose_threshold([0, 0, 0, 1, 1, 0], [0.1, 0.2, 0.3, 0.5, 0.6, 0.55], 99.0)
    assert chosen["method"] == "f1_adaptive" and chosen["threshold"] == 0.5 and chosen["f1"] == pytest.approx(0.8)
    chosen = choose_threshold([0] * 101, [i / 100 for i in range(101)], 95.0)
    assert chosen == {"threshold": pytest.approx(0.95), "method": "percentile_95_of_normal"}
