"""Hook implementations of the DefectFill plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="defectfill",
            produces=("adapter",),
            factory="defectkit_defectfill.trainer:DefectFillTrainer",
            config="defectkit_defectfill.config:DefectFillTrainConfig",
            summary="DefectFill: inpainting model + LoRA + defect token, defect/object/attention losses",
            extra="defectfill",
        )
    ]


@hookimpl
def defectkit_generators() -> list[Component]:
    return [
        Component(
            kind="generator",
            name="defectfill",
            produces=("generated_images",),
            consumes=(Consumes("adapter", producers=("defectfill",)),),
            factory="defectkit_defectfill.generate:DefectFillGenerator",
            config="defectkit_defectfill.config:DefectFillGenerateConfig",
            summary="DefectFill: good image + mask -> defect image; low-fidelity (LPIPS) selection, exact outside",
            extra="defectfill",
        )
    ]


@hookimpl
def defectkit_register_commands(cli) -> None:
    from defectkit_defectfill.cli import defectfill_group  # click only: light

    cli.add_command(defectfill_group)
