"""Each loss term on constructed cases, the random boxes, and the [V*] attention capture on a tiny UNet."""

import pytest
import torch

from defectkit_defectfill import attention
from defectkit_defectfill.losses import (
    attention_consistency_loss,
    attention_loss,
    defect_loss,
    latent_mask,
    object_loss,
    perceptual_loss,
    predicted_clean_latents,
    random_boxes,
)


def _mask(size=8):
    mask = torch.zeros(2, 1, size, size)
    mask[:, :, 2:4, 2:6] = 1.0  # 8 of 64 cells
    return mask


def test_defect_loss_counts_only_the_defect_region():
    mask = _mask()
    target = torch.zeros(2, 4, 8, 8)
    outside = torch.where(mask.bool().expand(2, 4, 8, 8), 0.0, 3.0)  # wrong everywhere but in the defect
    assert defect_loss(outside, target, mask) == 0.0
    inside = torch.where(mask.bool().expand(2, 4, 8, 8), 2.0, 0.0)
    # mean over all elements of M * e^2: 4 on 8 of 64 cells
    torch.testing.assert_close(defect_loss(inside, target, mask), torch.tensor(4.0 * 8 / 64))


def test_object_loss_weighs_the_defect_1_and_the_rest_alpha():
    mask = _mask()
    target = torch.zeros(2, 4, 8, 8)
    ones = torch.ones(2, 4, 8, 8)
    alpha = 0.3
    expected = (8 + alpha * 56) / 64
    torch.testing.assert_close(object_loss(ones, target, mask, alpha), torch.tensor(expected))
    outside_only = torch.where(mask.bool().expand(2, 4, 8, 8), 0.0, 1.0)
    torch.testing.assert_close(object_loss(outside_only, target, mask, alpha), torch.tensor(alpha * 56 / 64))
    assert object_loss(outside_only, target, mask, 0.0) == 0.0  # alpha 0: the defect loss's weighting


def test_attention_loss_is_zero_where_attention_equals_the_mask():
    mask = _mask()
    assert attention_loss(mask[:, 0].clone(), mask) == 0.0
    uniform = torch.full((2, 8, 8), 0.5)
    torch.testing.assert_close(attention_loss(uniform, mask), torch.tensor(0.25))


def test_latent_mask_keeps_a_thin_defect_as_its_share_of_a_cell():
    pixels = torch.zeros(1, 1, 64, 64)
    pixels[:, :, 10, :] = 1.0  # a one-pixel scratch across the image
    small = latent_mask(pixels, (8, 8))
    assert small.shape == (1, 1, 8, 8)
    torch.testing.assert_close(small[0, 0, 1], torch.full((8,), 1 / 8))
    assert small.sum() * 64 == pixels.sum()


def test_random_boxes_are_reproducible_and_sized_as_asked():
    a = random_boxes(6, 40, (0.25, 0.5), 1, torch.Generator().manual_seed(3))
    b = random_boxes(6, 40, (0.25, 0.5), 1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (6, 1, 40, 40)
    for box in a[:, 0]:
        rows, cols = box.any(1).sum(), box.any(0).sum()
        assert 10 <= rows <= 20 and 10 <= cols <= 20
        assert box.sum() == rows * cols  # one filled rectangle


def test_token_selection_finds_every_vector_of_the_token():
    ids = torch.tensor([[49406, 320, 500, 501, 49407], [49406, 500, 7, 7, 49407]])
    selection = attention.token_selection(ids, 500, 2)
    torch.testing.assert_close(selection[0], torch.tensor([0, 0, 0.5, 0.5, 0]))
    torch.testing.assert_close(selection[1], torch.tensor([0, 1.0, 0, 0, 0]))
    with pytest.raises(RuntimeError, match="does not contain"):
        attention.token_selection(torch.tensor([[1, 2, 3]]), 500, 1)


def test_capture_keeps_the_unet_output_and_trains_lora_through_the_map():
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(0)
    unet = UNet2DConditionModel(  # an inpainting UNet's shape: 9 input channels, cross-attention in the decoder
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=9,
        out_channels=4,
        # cross-attention at both resolutions, as the real UNets have it at several
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=4,
    )
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights="gaussian", target_modules=["to_k", "to_q"]))
    for name, param in unet.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)  # a non-zero adapter: the map depends on it
    torch.manual_seed(0)
    sample, text = torch.randn(2, 9, 16, 16), torch.randn(2, 7, 32)
    t = torch.tensor([10, 500])
    before = unet(sample, t, text).sample

    store = attention.install(unet)
    selection = torch.zeros(2, 7)
    selection[:, 3] = 1.0
    store.start(selection, (16, 16))
    after = unet(sample, t, text).sample
    maps = store.stop()
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)  # the processor computes the same attention
    assert maps.shape == (2, 16, 16) and bool(((maps >= 0) & (maps <= 1)).all())
    assert attention.decoder_attention_levels(unet) == 2
    scales = store.scale_maps()  # one map per decoder resolution (16 and 8), both at latent size
    assert [m.shape for m in scales] == [(2, 16, 16)] * 2 and sorted(store.sums) == [(8, 8), (16, 16)]
    assert not torch.allclose(scales[0], scales[1])
    kept = {key: entry[1] for key, entry in store.sums.items()}
    assert not store.active
    unet(sample, t, text)  # after stop(): the same ops run (for checkpointing's recompute), nothing is kept
    assert {key: entry[1] for key, entry in store.sums.items()} == kept

    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:8, 4:8] = 1.0
    attention_loss(maps, target).backward(retain_graph=True)
    grads = [p.grad for n, p in unet.named_parameters() if "lora" in n and "attn2" in n and "up_blocks" in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)

    # the multi-scale consistency trains the adapters of both resolutions' layers
    unet.zero_grad()
    attention_consistency_loss(scales).backward()
    for block in ("up_blocks.0.", "up_blocks.1."):
        grads = [p.grad for n, p in unet.named_parameters() if n.startswith(block) and "lora" in n and "attn2" in n]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), block


def test_capture_of_several_tokens_broadcasts_over_the_batch():
    store = attention.AttentionStore()
    selection = torch.zeros(1, 2, 5)  # one selection for every sample: token A at 1, token B at 3 and 4
    selection[0, 0, 1] = 1.0
    selection[0, 1, 3:5] = 0.5
    store.start(selection, (4, 4))
    heads, batch = 2, 3
    probs = torch.zeros(batch * heads, 16, 5)
    probs[..., 1] = 0.25
    probs[..., 3] = 0.75
    store.record(probs, heads)
    maps = store.stop()
    assert maps.shape == (3, 2, 4, 4)
    torch.testing.assert_close(maps[:, 0], torch.full((3, 4, 4), 0.25))
    torch.testing.assert_close(maps[:, 1], torch.full((3, 4, 4), 0.375))


def test_attention_consistency_is_the_variance_across_resolutions():
    coarse = torch.zeros(2, 8, 8)
    assert attention_consistency_loss([coarse, coarse.clone()]) == 0.0
    fine = torch.ones(2, 8, 8)
    torch.testing.assert_close(attention_consistency_loss([coarse, fine]), torch.tensor(0.25))  # each 0.5 off
    with pytest.raises(ValueError, match="two or more"):
        attention_consistency_loss([coarse])


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_predicted_clean_latents_invert_the_forward_process(kind):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(prediction_type=kind)
    torch.manual_seed(0)
    latents, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 400, 900])
    noisy = scheduler.add_noise(latents, noise, t)
    exact = noise if kind == "epsilon" else scheduler.get_velocity(latents, noise, t)
    estimate = predicted_clean_latents(noisy, exact, scheduler.alphas_cumprod[t], kind)
    torch.testing.assert_close(estimate, latents, atol=1e-3, rtol=1e-3)


def test_perceptual_loss_sees_only_the_defect_region_weighted_by_the_signal_share():
    from defectkit_metrics.api import FeatureLPIPS

    from defectkit_defectfill.tiny import tiny_lpips_features

    distance = FeatureLPIPS(tiny_lpips_features()).requires_grad_(False)
    torch.manual_seed(0)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 8:20] = 1.0
    weight = torch.ones(2)
    wrong_outside = torch.where(mask.bool(), real, -real)
    assert perceptual_loss(wrong_outside, real, mask, weight, distance) == 0.0
    estimate = torch.where(mask.bool(), torch.zeros_like(real), real).requires_grad_(True)
    loss = perceptual_loss(estimate, real, mask, weight, distance)
    assert loss > 0
    loss.backward()
    assert estimate.grad[:, :, 8:20, 8:20].abs().sum() > 0 and (estimate.grad * (1 - mask)).abs().sum() == 0
    half = perceptual_loss(estimate.detach(), real, mask, torch.tensor([0.5, 0.5]), distance)
    torch.testing.assert_close(half, loss.detach() / 2)
