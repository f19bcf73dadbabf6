"""patch_knn on new images: the :class:`~defectkit.protocols.Predictor` of a finished patch_knn detect step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defectkit.detect import score_range, step_scores
from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError
from defectkit.protocols import Prediction
from defectkit.rundir import RunDirectory
from defectkit.stats import choose_threshold
from defectkit_patchknn.config import PatchKNNDetectConfig
from defectkit_patchknn.detector import BANK_FILE, to_tensor
from defectkit_patchknn.model import PatchKNNModel


class PatchKNNPredictor:
    """PatchCore-style nearest-neighbour maps against the run's saved memory bank."""

    title = "patch_knn (PatchCore)"
    score_name = "anomaly score"

    def __init__(self, config: PatchKNNDetectConfig, run_dir: str | Path, step_id: str, device: str = "auto") -> None:
        self.config = config
        run = RunDirectory(run_dir)
        record = run.find_step(step_id)
        step_dir = run.path / record.dirname
        bank = run.artifact_before(record, "checkpoint")
        if bank is None:
            raise DefectkitError(
                f"{step_dir}: this patch_knn detect step fitted its memory bank on the fly and did not save it; "
                "add a `train: {use: patch_knn}` step before it to score new images"
            )
        if bank.is_dir():
            bank = bank / BANK_FILE
        self.model = PatchKNNModel.load(bank, resolve_device(device))
        labels, scores = step_scores(step_dir)
        if not scores:
            raise DefectkitError(f"{step_dir}: no scores.csv; the detect step did not finish")
        # patch_knn saves no threshold: the F1-best one on the step's own test scores (known labels), else the
        # 99th percentile of its normal scores: in-sample, as threshold_source says
        chosen = choose_threshold(labels, scores, 99.0)
        self.threshold = chosen["threshold"]
        self.threshold_source = f"{chosen['method']} on the run's test scores"
        self.score_range = score_range(self.threshold, scores)
        self.heat_range = (0.0, 2 * self.threshold if self.threshold > 0 else 1.0)

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Prediction]:
        config = self.config
        size = self.model.settings.image_size
        results: list[Prediction] = []
        for start in range(0, len(images), config.batch_size):
            chunk = images[start : start + config.batch_size]
            raw = np.stack(
                [np.asarray(i.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for i in chunk]
            )
            scored = self.model.score(to_tensor(raw), config.blur_sigma, config.image_score, config.reweight_neighbors)
            maps = scored.maps.float().cpu().numpy()
            for j in range(len(chunk)):
                results.append(
                    Prediction(
                        name=names[start + j], image=raw[j], score=float(scored.image_scores[j]), anomaly_map=maps[j]
                    )
                )
        return results
