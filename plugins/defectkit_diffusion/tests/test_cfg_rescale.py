import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from defectkit_diffusion.cfg_rescale import cfg_rescale_hook, rescaled


class Denoiser(torch.nn.Module):
    def forward(self, x):
        return (x * torch.linspace(0.5, 2.0, x.shape[0]).view(-1, 1, 1, 1),)


def test_hooked_plain_cfg_equals_diffusers_rescale():
    torch.manual_seed(0)
    x = torch.randn(4, 4, 8, 8)
    guidance, phi = 6.0, 0.7
    denoiser = Denoiser()
    with cfg_rescale_hook(denoiser, guidance, phi):
        uncond, cond = denoiser(x)[0].chunk(2)
    pipeline_combination = uncond + guidance * (cond - uncond)  # what a pipeline without guidance_rescale does
    raw_uncond, raw_cond = denoiser(x)[0].chunk(2)  # hook removed
    cfg = raw_uncond + guidance * (raw_cond - raw_uncond)
    expected = rescale_noise_cfg(cfg, raw_cond, guidance_rescale=phi)
    torch.testing.assert_close(pipeline_combination, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rescaled(raw_uncond, raw_cond, guidance, phi), expected)
    assert not torch.allclose(pipeline_combination, cfg)
