"""The detector itself; imported only when a recipe runs it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.anomaly_maps import map_names, save_map, write_scores
from defectkit.errors import DataError
from defectkit.io import atomic_path
from defectkit_example.config import PixelZScoreConfig

#: the fitted per-pixel statistics, saved in the detect step's folder for the predictor
STATS_FILE = "pixel_stats.npz"


class PixelZScoreDetector:
    """Fits per-pixel statistics on good training images; maps are |z| maxed over channels."""

    def __init__(self, config: PixelZScoreConfig) -> None:
        self.config = config

    def _pixels(self, sample) -> np.ndarray:
        return pixels(sample.load_image(), self.config.size)

    def open_predictor(self, run_dir: str | Path, step_id: str, device: str = "auto"):
        """Score new images with a finished detect step (``defectkit detect``, ``defectkit serve``)."""
        from defectkit_example.predictor import PixelZScorePredictor

        return PixelZScorePredictor(self.config, run_dir, step_id)

    def detect(self, ctx) -> None:
        good = [s for s in ctx.samples("train") if s.is_normal]
        if len(good) < 2:
            raise DataError(f"pixel_zscore needs at least 2 good training images, the dataset has {len(good)}")
        stack = np.stack([self._pixels(s) for s in ctx.progress(good, description="fitting")])
        mean, std = stack.mean(axis=0), stack.std(axis=0) + self.config.eps
        with atomic_path(ctx.step_dir / STATS_FILE) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, mean=mean, std=std)  # what the predictor needs to score new images

        # the layout every detection metric reads: anomaly_maps/[category/]defect_type/stem.npy + scores.csv
        maps_dir = ctx.step_dir / "anomaly_maps"
        test = ctx.samples("test")
        names = map_names(test, "pixel_zscore")
        scores = []
        for name, sample in zip(names, ctx.progress(test, description="scoring"), strict=True):
            anomaly_map = zscore_map(self._pixels(sample), mean, std)
            save_map(maps_dir, name, anomaly_map)
            scores.append(float(anomaly_map.max()))

        write_scores(ctx.step_dir / "scores.csv", names, scores)
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("scores", ctx.step_dir / "scores.csv")
        ctx.log_metrics({"test_images": len(scores)})


def pixels(image: Image.Image, size: int) -> np.ndarray:
    """RGB in 0..1 at ``size`` x ``size``: ``float32 [S, S, 3]``."""
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255.0


def zscore_map(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """|z| of every pixel against the good images' statistics, maxed over the channels."""
    return (np.abs(image - mean) / std).max(axis=2)


def read_scores(path: str | Path) -> dict[str, float]:
    """Read a ``scores.csv`` back (used by the tests)."""
    with open(path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
