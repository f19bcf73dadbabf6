import diffusers
import numpy as np
import pytest
import torch

from defectkit.errors import DefectkitError
from defectkit_diffusion.schedulers import SPECS

SD_SCHEDULERS = [name for name, spec in SPECS.items() if not spec.flow_only]
FLOW_SCHEDULERS = [name for name, spec in SPECS.items() if spec.flow]


@pytest.fixture(scope="module")
def pipes(tiny_models):
    return {
        "sd15": diffusers.StableDiffusionPipeline.from_pretrained(tiny_models["sd15"]),
        "sd3": diffusers.StableDiffusion3Pipeline.from_pretrained(tiny_models["sd3"]),
    }


def _sample(pipe):
    out = pipe(
        "a scratch",
        num_inference_steps=3,
        height=32,
        width=32,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert np.isfinite(out).all()
    return out


@pytest.mark.parametrize("family", ["sd15", "sd3"])
def test_every_scheduler_swaps_and_samples_or_refuses_by_name(registered, pipes, family):
    pipe = pipes[family]
    base = dict(pipe.scheduler.config)
    outputs = {}
    for name in SPECS:
        scheduler = registered.get("scheduler", name).create({})
        fits = name in (FLOW_SCHEDULERS if family == "sd3" else SD_SCHEDULERS)
        if not fits:
            with pytest.raises(DefectkitError, match=f"scheduler {name}: "):
                scheduler.build(base, family)
            continue
        pipe.scheduler = scheduler.build(base, family)
        assert type(pipe.scheduler).__name__ == SPECS[name].class_name
        # the backend's training schedule is kept
        if family == "sd15":
            assert pipe.scheduler.config.beta_schedule == "scaled_linear"
            assert pipe.scheduler.config.beta_end == base["beta_end"]
        else:
            assert pipe.scheduler.config.get("use_flow_sigmas", True)
        outputs[name] = _sample(pipe)
    # different samplers take different paths
    assert len({o.tobytes() for o in outputs.values()}) == len(outputs)


def test_options_reach_the_scheduler(registered, pipes):
    base = pipes["sd15"].scheduler.config
    ddim = registered.get("scheduler", "ddim").create({"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"})
    built = ddim.build(base)
    assert built.config.rescale_betas_zero_snr and built.config.timestep_spacing == "trailing"
    assert float(built.alphas_cumprod[-1]) < 1e-6  # zero terminal SNR
    dpm = registered.get("scheduler", "dpmpp_2m").create({}).build(base)
    assert dpm.config.use_karras_sigmas and dpm.config.algorithm_type == "dpmsolver++"
    assert (
        not registered.get("scheduler", "dpmpp_2m")
        .create({"use_karras_sigmas": False})
        .build(base)
        .config.use_karras_sigmas
    )
    unipc = registered.get("scheduler", "unipc").create({"extra": {"lower_order_final": False}}).build(base)
    assert unipc.config.lower_order_final is False


def test_an_option_the_class_does_not_take_is_one_line(registered, pipes):
    pndm = registered.get("scheduler", "pndm").create({"rescale_betas_zero_snr": True})
    with pytest.raises(
        DefectkitError, match="scheduler pndm: rescale_betas_zero_snr is not an option of diffusers.PNDMScheduler"
    ):
        pndm.build(pipes["sd15"].scheduler.config)
