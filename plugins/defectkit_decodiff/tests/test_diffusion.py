"""The cosine schedule, the training corruption and DDIM deviation correction."""

import torch

from defectkit_decodiff.diffusion import (
    corrupt,
    cosine_alphas_cumprod,
    ddim_deviation_sample,
    patch_masks,
    sampling_timesteps,
)
from defectkit_decodiff.postprocess import MapSettings, geometric_maps


def test_cosine_schedule_of_ten_steps():
    abar = cosine_alphas_cumprod(10)
    assert abar.shape == (10,)
    assert ((abar > 0) & (abar < 1)).all() and (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.97 and abar[-1] < 0.01


def test_five_steps_from_the_clean_latent():
    assert sampling_timesteps(5, 5) == [4, 3, 2, 1, 0]
    assert sampling_timesteps(10, 5) == [9, 7, 4, 2, 0]
    seen = []

    def model(x, t, y, return_gate=False):
        seen.append((x.clone(), t.tolist()))
        return torch.zeros_like(x)

    latent = torch.randn(2, 4, 8, 8)
    out, gate = ddim_deviation_sample(model, latent, torch.tensor([0, 1]), cosine_alphas_cumprod(10), 5, 5)
    assert [t for _, t in seen] == [[4, 4], [3, 3], [2, 2], [1, 1], [0, 0]]
    assert torch.equal(seen[0][0], latent), "sampling starts from the clean latent, no noise added"
    assert torch.equal(out, latent) and gate is None


def test_zero_deviation_on_a_perfect_input_gives_a_zero_map():
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    latents = torch.nn.functional.pixel_unshuffle(images, 4)
    corrected, _ = ddim_deviation_sample(
        lambda x, t, y: torch.zeros_like(x), latents, torch.zeros(3, dtype=torch.long), cosine_alphas_cumprod(10), 5, 5
    )
    maps = geometric_maps(images, torch.nn.functional.pixel_shuffle(corrected, 4), latents, corrected, MapSettings())
    assert maps.shape == (3, 32, 32) and maps.abs().max() == 0


def test_an_oracle_model_removes_the_whole_deviation():
    clean = torch.randn(2, 4, 8, 8)
    anomaly = torch.zeros_like(clean)
    anomaly[:, :, 2:5, 3:6] = 3.0
    calls = []

    def oracle(x, t, y):  # predicts exactly how far x is from the clean latent
        calls.append(float((x - clean).abs().max()))
        return x - clean

    out, _ = ddim_deviation_sample(
        oracle, clean + anomaly, torch.zeros(2, dtype=torch.long), cosine_alphas_cumprod(10), 5, 5
    )
    assert torch.allclose(out, clean, atol=1e-5)
    # DDIM removes the deviation gradually: each step sees a smaller one
    assert abs(calls[0] - 3.0) < 1e-5 and all(b < a for a, b in zip(calls, calls[1:], strict=False))


def test_patch_masks_and_corruption():
    generator = torch.Generator().manual_seed(0)
    noise, shuffle, source = patch_masks((64, 16, 16), 0.7, [2, 4, 8], 0.5, generator)
    assert noise.shape == shuffle.shape == (64, 1, 16, 16) and source.shape == (64, 256)
    assert (noise * shuffle).sum() == 0, "a patch is noised or shuffled, never both"
    ratios = (noise + shuffle).mean(dim=(1, 2, 3))
    assert ratios.max() <= 0.95 and ratios.min() < 0.2 and ratios.mean() > 0.15
    assert torch.equal(source.sort(dim=1).values, torch.arange(256).repeat(64, 1)), "a permutation of positions"

    x0 = torch.randn(64, 4, 16, 16)
    t = torch.randint(0, 10, (64,), generator=generator)
    x_t, deviation = corrupt(x0, t, cosine_alphas_cumprod(10), noise, shuffle, source, generator)
    assert torch.equal(x_t - x0, deviation) or torch.allclose(x_t - x0, deviation, atol=1e-6)
    untouched = (noise + shuffle) == 0
    assert torch.equal(x_t.masked_select(untouched), x0.masked_select(untouched)), "normal regions stay as they are"
    assert (deviation.abs() * noise).sum() > 0 and (deviation.abs() * shuffle).sum() > 0
