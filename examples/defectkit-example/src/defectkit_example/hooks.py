"""The plugin's hooks. Keep this module light: it is imported by `defectkit plugins` and `--help`."""

from defectkit import Component, hookimpl


@hookimpl
def defectkit_detectors() -> list[Component]:
    return [
        Component(
            kind="detector",
            name="pixel_zscore",
            produces=("anomaly_maps", "scores"),
            factory="defectkit_example.detector:PixelZScoreDetector",
            config="defectkit_example.config:PixelZScoreConfig",
            summary="per-pixel z-score against the good training images (aligned parts)",
            requires=("numpy>=1.26", "pillow>=10"),
        )
    ]
