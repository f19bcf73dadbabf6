import diffusers
import pytest
import torch

from defectkit.errors import DefectkitError
from defectkit.testing import check_component, check_plugin_light

BACKENDS = {
    "sd15": ("sd15", diffusers.StableDiffusionPipeline),
    "sdxl": ("sdxl", diffusers.StableDiffusionXLPipeline),
    "sd3": ("sd3", diffusers.StableDiffusion3Pipeline),
    "sd15_inpainting": ("sd15_inpainting", diffusers.StableDiffusionInpaintPipeline),
    "sd2_inpainting": ("sd15_inpainting", diffusers.StableDiffusionInpaintPipeline),
    "sdxl_inpainting": ("sdxl_inpainting", diffusers.StableDiffusionXLInpaintPipeline),
}


def test_hooks_are_light():
    check_plugin_light("defectkit_diffusion.hooks")


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_loads_its_pipeline_class_and_generates(registered, tiny_models, name):
    folder_key, cls = BACKENDS[name]
    component = registered.get("model_backend", name)
    check_component(component)
    backend = component.create({"model": str(tiny_models[folder_key]), "dtype": "fp32", "device": "cpu"})
    assert backend.family == {"sd2_inpainting": "sd15"}.get(name, name.split("_")[0])
    assert backend.inpainting == name.endswith("inpainting")
    pipe = backend.load_pipeline()
    assert type(pipe) is cls
    assert pipe.vae.dtype == torch.float32 and pipe.vae.device.type == "cpu"
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np"}
    if backend.inpainting:
        kwargs["image"] = torch.rand(1, 3, 32, 32)
        kwargs["mask_image"] = torch.ones(1, 1, 32, 32)
    images = pipe("a scratch", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert images.shape == (1, 32, 32, 3) and images.std() > 0


def test_backend_options_are_applied(registered, tiny_models):
    backend = registered.get("model_backend", "sd15").create(
        {
            "model": str(tiny_models["sd15"]),
            "dtype": "bf16",
            "attention_slicing": True,
            "vae_slicing": True,
            "vae_tiling": True,
        }
    )
    pipe = backend.load_pipeline(device="cpu")
    assert pipe.unet.dtype == torch.bfloat16
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    processors = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert processors == {"SlicedAttnProcessor"}


def test_backend_loads_controlnet_pipelines(registered, tiny_models):
    for family, cls in (
        ("sd15", "StableDiffusionControlNetPipeline"),
        ("sdxl", "StableDiffusionXLControlNetPipeline"),
        ("sd3", "StableDiffusion3ControlNetPipeline"),
    ):
        net_cls = diffusers.SD3ControlNetModel if family == "sd3" else diffusers.ControlNetModel
        nets = [net_cls.from_pretrained(tiny_models[f"{family}_controlnet"]) for _ in range(2)]
        backend = registered.get("model_backend", family).create({"model": str(tiny_models[family]), "device": "cpu"})
        pipe = backend.load_pipeline(controlnets=nets)
        assert type(pipe).__name__ == cls


def test_missing_folder_is_one_line(registered, tmp_path):
    backend = registered.get("model_backend", "sdxl").create({"model": str(tmp_path / "nowhere")})
    with pytest.raises(DefectkitError, match=r"model='.*nowhere': no such folder; .*--set .*=/local/folder"):
        backend.load_pipeline(device="cpu")
    (tmp_path / "empty").mkdir()
    backend = registered.get("model_backend", "sdxl").create({"model": str(tmp_path / "empty")})
    with pytest.raises(DefectkitError, match="without model_index.json"):
        backend.load_pipeline(device="cpu")


def test_uncached_hub_id_while_offline_is_one_line(registered):
    backend = registered.get("model_backend", "sd3").create({"device": "cpu"})
    assert backend.model == "stabilityai/stable-diffusion-3-medium-diffusers"
    with pytest.raises(DefectkitError) as info:
        backend.load_pipeline()
    message = str(info.value)
    assert "\n" not in message
    assert "model='stabilityai/stable-diffusion-3-medium-diffusers'" in message and "--set" in message
