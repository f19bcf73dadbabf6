"""Hook implementations of the decodiff plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl

_REQUIRES = ("torch>=2.15", "diffusers>=0.42", "accelerate>=1.10", "safetensors>=0.4", "matplotlib>=3.8")


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="decodiff",
            produces=("checkpoint",),
            factory="defectkit_decodiff.trainer:DecoDiffTrainer",
            config="defectkit_decodiff.config:DecoDiffTrainConfig",
            summary="DeCo-Diff: class-conditioned UNet trained to predict deviations of masked/shuffled latent patches",
            requires=_REQUIRES,
        )
    ]


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="decodiff",
            produces=("anomaly_maps", "scores"),
            consumes=(Consumes("checkpoint", producers=("decodiff",)),),
            factory="defectkit_decodiff.detector:DecoDiffDetector",
            config="defectkit_decodiff.config:DecoDiffDetectConfig",
            summary="DeCo-Diff anomaly maps: DDIM deviation correction from the clean latent, image x latent difference",
            requires=_REQUIRES,
        )
    ]

