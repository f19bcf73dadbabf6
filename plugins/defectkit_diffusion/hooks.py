"""Hook implementations of the diffusion plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, hookimpl

_DIFFUSERS = ("torch>=2.2", "diffusers>=0.42", "transformers>=5.23", "accelerate>=1.10")

_BACKENDS = (
    ("sd15", "Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5), 512 px"),
    ("sdxl", "Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0), 1024 px"),
    ("sd3", "Stable Diffusion 3 medium (stabilityai/stable-diffusion-3-medium-diffusers), 1024 px"),
    ("sd15_inpainting", "SD 1.5 inpainting (stable-diffusion-v1-5/stable-diffusion-inpainting)"),
    ("sd2_inpainting", "SD 2 inpainting (stabilityai/stable-diffusion-2-inpainting)"),
    ("sdxl_inpainting", "SDXL inpainting (diffusers/stable-diffusion-xl-1.0-inpainting-0.1)"),
)


@hookimpl
def defectkit_model_backends() -> list[Component]:
    return [
        Component(
            kind="model_backend",
            name=name,
            factory=f"defectkit_diffusion.backends:{name}_backend",
            config="defectkit_diffusion.config:BackendConfig",
            summary=summary + "; dtype, device, slicing/tiling, CPU offload, torch.compile",
            requires=_DIFFUSERS,
        )
        for name, summary in _BACKENDS
    ]
