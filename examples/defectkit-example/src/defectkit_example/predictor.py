"""Scoring new images with a finished ``pixel_zscore`` detect step: the plugin's predictor.

The worked case of CONTRIBUTING.md §2: ``defectkit detect RUN_DIR IMAGES...`` and ``defectkit serve RUN_DIR``
find it through ``PixelZScoreDetector.open_predictor``; nothing in defectkit knows this plugin by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.detect import score_range, step_scores
from defectkit.errors import DefectkitError
from defectkit.protocols import Prediction
from defectkit.rundir import RunDirectory
from defectkit.stats import choose_threshold
from defectkit_example.config import PixelZScoreConfig
from defectkit_example.detector import STATS_FILE, pixels, zscore_map


class PixelZScorePredictor:
    """The step's per-pixel mean and standard deviation, and a threshold chosen on its own test scores."""

    title = "pixel z-score"
    score_name = "largest |z|"

    def __init__(self, config: PixelZScoreConfig, run_dir: str | Path, step_id: str) -> None:
        self.config = config
        run = RunDirectory(run_dir)
        step_dir = run.path / run.find_step(step_id).dirname
        if not (step_dir / STATS_FILE).is_file():
            raise DefectkitError(f"{step_dir}: no {STATS_FILE}; run the detect step again with this plugin version")
        with np.load(step_dir / STATS_FILE, allow_pickle=False) as saved:
            self.mean, self.std = saved["mean"], saved["std"]
        labels, scores = step_scores(step_dir)
        # F1-best on the step's test scores where they hold defects, else the 99th percentile of the normal ones
        chosen = choose_threshold(labels, scores, 99.0)
        self.threshold = chosen["threshold"]
        self.threshold_source = f"{chosen['method']} on the run's test scores"
        self.score_range = score_range(self.threshold, scores)

    def predict(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Prediction]:
        results = []
        for image, name in zip(images, names, strict=True):
            seen = pixels(image, self.config.size)
            anomaly_map = zscore_map(seen, self.mean, self.std)
            results.append(
                Prediction(
                    name=name,
                    image=(seen * 255).round().astype(np.uint8),
                    score=float(anomaly_map.max()),
                    anomaly_map=anomaly_map,
                )
            )
        return results
