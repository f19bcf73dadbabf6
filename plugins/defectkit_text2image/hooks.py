"""Hook implementations of the text2image plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="text2image_scratch",
            produces=("text2image_model", "sample_grid"),
            factory="defectkit_text2image.trainer:Text2ImageTrainer",
            config="defectkit_text2image.config:Text2ImageTrainConfig",
            summary="a text-conditional pixel-space diffusion model (UNet + CLIP text encoder) trained from scratch",
            extra="text2image",
        )
    ]


@hookimpl
def defectkit_generators() -> list[Component]:
    return [
        Component(
            kind="generator",
            name="text2image_scratch",
            produces=("generated_images",),
            # not required: with.model may name a model folder
            consumes=(Consumes("text2image_model", producers=("text2image_scratch",), required=False),),
            factory="defectkit_text2image.generate:Text2ImageGenerator",
            config="defectkit_text2image.config:Text2ImageGenerateConfig",
            summary="N images per defect class from a text2image_scratch model (EMA weights, classifier-free guidance)",
            extra="text2image",
        )
    ]
