"""Hook implementations of the dinov3 plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from __future__ import annotations

from defectkit import Component, Consumes, hookimpl


@hookimpl
def defectkit_model_backends() -> list[Component]:
    return [
        Component(
            kind="model_backend",
            name="dinov3",
            factory="defectkit_dinov3.backbone:dinov3_backbone",
            config="defectkit_dinov3.config:DINOv3BackboneConfig",
            summary="DINOv3 ViT (patch 16, register tokens) through transformers; patch tokens for dense heads",
            extra="dinov3",
        ),
        Component(
            kind="model_backend",
            name="dinov2",
            factory="defectkit_dinov3.backbone:dinov2_backbone",
            config="defectkit_dinov3.config:DINOv2BackboneConfig",
            summary="DINOv2 ViT (patch 14) through transformers; patch tokens for dense heads",
            extra="dinov3",
        ),
        Component(
            kind="model_backend",
            name="timm",
            factory="defectkit_dinov3.backbone:timm_backbone",
            config="defectkit_dinov3.config:TimmBackboneConfig",
            summary="any timm ViT by name (vit_small_patch16_224.augreg_in21k ...); patch tokens for dense heads",
            extra="dinov3",
        ),
    ]


@hookimpl
def defectkit_trainers() -> list[Component]:
    return [
        Component(
            kind="trainer",
            name="dinov3_multitask",
            produces=("checkpoint", "best_checkpoint"),
            factory="defectkit_dinov3.train:MultiTaskTrainer",
            config="defectkit_dinov3.config:MultiTaskTrainConfig",
            summary="ViT + segmentation decoder + mask-guided attention pooling; staged freeze -> fine-tune",
            extra="dinov3",
        )
    ]


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="dinov3_multitask",
            produces=("predictions",),
            # not required: with.checkpoint may name one
            consumes=(
                Consumes("checkpoint", producers=("dinov3_multitask",), required=False),
                Consumes("best_checkpoint", producers=("dinov3_multitask",), required=False),
            ),
            factory="defectkit_dinov3.predict:MultiTaskDetector",
            config="defectkit_dinov3.config:MultiTaskPredictConfig",
            summary="classifies the test images and predicts defect masks: predictions CSV, masks, visualisations",
            extra="dinov3",
        )
    ]

