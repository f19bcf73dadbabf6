"""Hook implementations of the finetune plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl

_TRAINERS = (
    (
        "lora",
        "LoraTrainer",
        "LoraTrainConfig",
        "LoRA on the UNet/transformer attention (peft), optionally the text encoders",
    ),
    ("dora", "DoraTrainer", "DoraTrainConfig", "DoRA: LoRA with weight decomposition (peft LoraConfig(use_dora=True))"),
    (
        "adalora",
        "AdaLoraTrainer",
        "AdaLoraTrainConfig",
        "dynamic rank: peft AdaLoRA prunes an init_r budget to target_r",
    ),
    (
        "textual_inversion",
        "TextualInversionTrainer",
        "TextualInversionConfig",
        "textual inversion: a multi-vector token per defect class (SD 1.5, SDXL)",
    ),
    ("ti_lora", "TiLoraTrainer", "TiLoraConfig", "textual inversion tokens and LoRA/DoRA trained together"),
)


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name=name,
            produces=("adapter",),
            consumes=(Consumes("captions", required=False),),
            factory=f"defectkit_finetune.trainer:{factory}",
            config=f"defectkit_finetune.config:{config}",
            summary=summary,
            extra="finetune",
        )
        for name, factory, config, summary in _TRAINERS
    ]
