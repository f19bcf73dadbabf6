"""The detector itself; imported only when a recipe runs it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.anomaly_maps import map_names, save_map, write_scores
from defectkit.errors import DataError
from defectkit_example.config import PixelZScoreConfig


class PixelZScoreDetector:
    """Fits per-pixel statistics on good training images; maps are |z| maxed over channels."""

    def __init__(self, config: PixelZScoreConfig) -> None:
        self.config = config

    def _pixels(self, sample) -> np.ndarray:
        size = (self.config.size, self.config.size)
        return np.asarray(sample.load_image().resize(size, Image.BILINEAR), np.float32) / 255.0

    def detect(self, ctx) -> None:
        good = [s for s in ctx.samples("train") if s.is_normal]
        if len(good) < 2:
            raise DataError(f"pixel_zscore needs at least 2 good training images, the dataset has {len(good)}")
        stack = np.stack([self._pixels(s) for s in ctx.progress(good, description="fitting")])
        mean, std = stack.mean(axis=0), stack.std(axis=0) + self.config.eps

        # the layout every detection metric reads: anomaly_maps/[category/]defect_type/stem.npy + scores.csv
        maps_dir = ctx.step_dir / "anomaly_maps"
        test = ctx.samples("test")
        names = map_names(test, "pixel_zscore")
        scores = []
        for name, sample in zip(names, ctx.progress(test, description="scoring"), strict=True):
            anomaly_map = (np.abs(self._pixels(sample) - mean) / std).max(axis=2)
            save_map(maps_dir, name, anomaly_map)
            scores.append(float(anomaly_map.max()))

        write_scores(ctx.step_dir / "scores.csv", names, scores)
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("scores", ctx.step_dir / "scores.csv")
        ctx.log_metrics({"test_images": len(scores)})


def read_scores(path: str | Path) -> dict[str, float]:
    """Read a ``scores.csv`` back (used by the tests)."""
    with open(path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
