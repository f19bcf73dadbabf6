"""Hook implementations of the augment plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="augment_compare",
            produces=("comparison",),
            consumes=(Consumes("generated_images"),),
            factory="defectkit_augment.compare:AugmentCompare",
            config="defectkit_augment.config:AugmentCompareConfig",
            summary="closes the loop: one classifier trained on real images, then on real + generated, over seeds; the gain with its spread",
            extra="augment",
        )
    ]
