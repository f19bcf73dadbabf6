"""defectkit hooks of the metrics plugin: the metric components and ``defectkit eval-maps``.

Imports nothing heavy: the components are strings until a recipe uses one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import Component, Consumes
from defectkit.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

_E = "defectkit_metrics.evaluate"
_C = "defectkit_metrics.configs"

_DETECTION_FIGURES = {
    "image_auroc": "image-level AUROC of the anomaly scores",
    "image_ap": "image-level average precision (step-wise, as scikit-learn)",
    "image_f1max": "image-level best F1 over all thresholds",
    "pixel_auroc": "pixel-level AUROC of the anomaly maps",
    "pixel_ap": "pixel-level average precision (step-wise, as scikit-learn)",
    "pixel_f1max": "pixel-level best F1 over all thresholds",
    "pixel_aupro": "area under the per-region-overlap curve to FPR 0.3, divided by 0.3",
}


_GENERATED = (Consumes("generated_images"),)
_MAPS = (Consumes("anomaly_maps"), Consumes("scores", required=False))
_PREDICTIONS = (Consumes("predictions"),)


def _metric(
    name: str, factory: str, config: str, summary: str, consumes: tuple[Consumes, ...] = _GENERATED
) -> Component:
    return Component(
        kind="metric",
        name=name,
        factory=f"{_E}:{factory}",
        config=f"{_C}:{config}",
        summary=summary,
        extra="metrics",
        produces=(),
        consumes=consumes,
    )


@hookimpl
def defectkit_metrics() -> list[Component]:
    components = [
        _metric(
            "detection",
            "DetectionMetric",
            "DetectionConfig",
            "image and pixel AUROC, AP, F1-max and AUPRO@0.3 of anomaly maps (all seven at once)",
            _MAPS,
        )
    ]
    components += [
        Component(
            kind="metric",
            name=key,
            factory=f"{_E}:{key.title().replace('_', '')}Metric",
            config=f"{_C}:DetectionConfig",
            summary=summary,
            extra="metrics",
            produces=(),
            consumes=_MAPS,
        )
        for key, summary in _DETECTION_FIGURES.items()
    ]
    components += [
        _metric("fid", "FIDMetric", "FIDConfig", "Fréchet distance of generated vs real image features"),
        _metric(
            "kid",
            "KIDMetric",
            "KIDConfig",
            "kernel inception distance; subset size adapted to small sets",
        ),
        _metric("lpips", "LPIPSMetric", "LPIPSConfig", "perceptual distance of generated to real images"),
        _metric(
            "ic_lpips",
            "ICLPIPSMetric",
            "ICLPIPSConfig",
            "intra-cluster LPIPS: diversity of generated images around each training image",
        ),
        _metric(
            "clip_score",
            "CLIPScoreMetric",
            "CLIPScoreConfig",
            "image-prompt agreement through open_clip",
        ),
        _metric("ssim", "SSIMMetric", "SSIMConfig", "structural similarity of generated to real images"),
        _metric(
            "edge_ssim",
            "EdgeSSIMMetric",
            "EdgeSSIMConfig",
            "SSIM of Sobel or Canny edge maps",
        ),
        _metric(
            "lbp",
            "LBPMetric",
            "LBPConfig",
            "texture similarity of local-binary-pattern histograms",
        ),
        _metric(
            "inception_score",
            "InceptionScoreMetric",
            "InceptionScoreConfig",
            "Inception Score of generated images (needs the classifier weights)",
        ),
        _metric(
            "classification",
            "ClassificationMetric",
            "ClassificationConfig",
            "accuracy, per-class precision, recall, F1 and a confusion matrix (PNG)",
            _PREDICTIONS,
        ),
        _metric(
            "segmentation",
            "SegmentationMetric",
            "SegmentationConfig",
            "IoU and Dice of predicted against ground-truth masks",
            _PREDICTIONS,
        ),
    ]
    return components


@hookimpl
def defectkit_register_commands(cli: click.Group) -> None:
    from defectkit_metrics.cli import eval_maps

    cli.add_command(eval_maps)
