"""The detector itself; imported only when a recipe runs it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.errors import DataError
from defectkit.io import atomic_path, write_text

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

        maps_dir = ctx.step_dir / "anomaly_maps"
        rows = []
        for sample in ctx.progress(ctx.samples("test"), description="scoring"):
            anomaly_map = (np.abs(self._pixels(sample) - mean) / std).max(axis=2)
            path = maps_dir / sample.defect_type / f"{Path(sample.id).stem}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, anomaly_map.astype(np.float32), allow_pickle=False)
            rows.append((f"{sample.defect_type}/{Path(sample.id).stem}", float(anomaly_map.max())))

        lines = ["path,score"] + [f"{p},{s:.6f}" for p, s in rows]
        write_text(ctx.step_dir / "scores.csv", "\n".join(lines) + "\n")
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("scores", ctx.step_dir / "scores.csv")
        ctx.log_metrics({"test_images": len(rows)})


def read_scores(path: str | Path) -> dict[str, float]:
    """Read a ``scores.csv`` back (used by the tests)."""
    with open(path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
