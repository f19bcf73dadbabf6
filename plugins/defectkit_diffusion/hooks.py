"""Hook implementations of the diffusion plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl

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
            extra="diffusion",
        )
        for name, summary in _BACKENDS
    ]


_SCHEDULERS = (
    ("unipc", "UniPCConfig", "UniPC multistep (fast, good at 20 steps); flow mode for SD3"),
    ("dpmpp_2m", "DPMSolverConfig", "DPM-Solver++ 2M multistep, Karras sigmas by default; flow mode for SD3"),
    ("ddim", "DDIMConfig", "DDIM (deterministic)"),
    ("euler", "EulerConfig", "Euler discrete"),
    ("euler_ancestral", "EulerConfig", "Euler ancestral (stochastic)"),
    ("pndm", "DDIMConfig", "PNDM (PLMS), SD 1.5's default"),
    ("lcm", "LCMConfig", "LCM (for LCM-distilled weights or LCM-LoRA, 2-8 steps)"),
    ("flow_match_euler", "FlowMatchConfig", "flow-matching Euler (SD3's default)"),
)


@hookimpl
def defectkit_schedulers() -> list[Component]:
    return [
        Component(
            kind="scheduler",
            name=name,
            factory=f"defectkit_diffusion.schedulers:{name}_scheduler",
            config=f"defectkit_diffusion.config:{config}",
            summary=summary + "; from the backend's scheduler config",
            extra="diffusion",
        )
        for name, config, summary in _SCHEDULERS
    ]


_MODALITIES = (
    ("canny", "CannyConfig", "Canny edges (OpenCV)"),
    ("softedge", "SoftEdgeConfig", "soft edges: HED/PiDiNet (controlnet_aux) or weight-free Sobel soft edges"),
    (
        "hed",
        "SoftEdgeConfig",
        "the seed's name for soft edges: the HED annotator (extra defectkit[hed]: controlnet-aux) where it loads, "
        "else weight-free Sobel soft edges",
    ),
    ("depth", "DepthConfig", "relative depth from a transformers depth estimator (DPT/MiDaS)"),
    ("normal", "NormalConfig", "surface normals derived from estimated depth"),
)


@hookimpl
def defectkit_controlnet_modalities() -> list[Component]:
    return [
        Component(
            kind="controlnet_modality",
            name=name,
            factory=f"defectkit_diffusion.controlnet:{name}_modality",
            config=f"defectkit_diffusion.config:{config}",
            summary=summary + "; ControlNet weights per backend family",
            extra="diffusion",
        )
        for name, config, summary in _MODALITIES
    ]


@hookimpl
def defectkit_generators() -> list[Component]:
    return [
        Component(
            kind="generator",
            name="stable_diffusion",
            produces=("generated_images",),
            # an adapter from any finetune trainer (or DefectFill's); captions only with prompts: captions
            consumes=(Consumes("adapter", required=False), Consumes("captions", required=False)),
            factory="defectkit_diffusion.generate:StableDiffusionGenerator",
            config="defectkit_diffusion.config:GenerateConfig",
            summary="N images per defect class: SD1.5/SDXL/SD3 backends, ControlNets, captions or templates, "
            "adapter tokens and LoRA, per-class guidance, CFG rescale",
            extra="diffusion",
        )
    ]
