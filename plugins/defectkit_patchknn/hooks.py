"""Hook implementations of the patchknn plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="patch_knn",
            produces=("checkpoint",),
            factory="defectkit_patchknn.detector:PatchKNNTrainer",
            config="defectkit_patchknn.config:PatchKNNTrainConfig",
            summary="PatchCore memory bank of frozen ResNet patch features from good images (coreset, no training)",
            extra="patchknn",
        )
    ]


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="patch_knn",
            produces=("checkpoint", "anomaly_maps", "scores"),
            # without a train step before it, the detect step builds its memory bank itself
            consumes=(Consumes("checkpoint", producers=("patch_knn",), required=False),),
            factory="defectkit_patchknn.detector:PatchKNNDetector",
            config="defectkit_patchknn.config:PatchKNNDetectConfig",
            summary="PatchCore anomaly maps: nearest-neighbour distance of each patch to the memory bank",
            extra="patchknn",
        )
    ]
