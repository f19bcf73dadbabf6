"""Hook implementations of the decodiff plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="decodiff",
            produces=("checkpoint", "best_checkpoint", "validation_set"),
            factory="defectkit_decodiff.trainer:DecoDiffTrainer",
            config="defectkit_decodiff.config:DecoDiffTrainConfig",
            summary="DeCo-Diff: class-conditioned UNet trained to predict deviations of masked/shuffled latent patches",
            extra="decodiff",
        )
    ]


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="decodiff",
            produces=("anomaly_maps", "scores"),
            consumes=(
                Consumes("checkpoint", producers=("decodiff",)),
                Consumes("best_checkpoint", producers=("decodiff",), required=False),
                # validation_images' synthetic validation: the threshold without a val split, validation_grid
                Consumes("validation_set", producers=("decodiff",), required=False),
            ),
            factory="defectkit_decodiff.detector:DecoDiffDetector",
            config="defectkit_decodiff.config:DecoDiffDetectConfig",
            summary="DeCo-Diff anomaly maps: DDIM deviation correction from the clean latent, image x latent difference",
            extra="decodiff",
        )
    ]

