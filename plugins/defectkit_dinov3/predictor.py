"""The DINOv3 multi-task classifier on new images: the :class:`~defectkit.protocols.Predictor` of a finished
``dinov3_multitask`` detect step (class, probabilities, defect probability, predicted mask, attention)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError
from defectkit.protocols import Prediction
from defectkit.rundir import RunDirectory
from defectkit_dinov3.checkpoint import LoadedModel, load_checkpoint
from defectkit_dinov3.config import MultiTaskPredictConfig
from defectkit_dinov3.predict import predict_batch, to_prediction


class Dinov3Predictor:
    """Score: the defect probability; map: the attention (each image's own colour range); mask: predicted."""

    title = "DINOv3 multi-task classifier"
    score_name = "defect probability"

    def __init__(self, config: MultiTaskPredictConfig, loaded: LoadedModel) -> None:
        self.config = config
        self.loaded = loaded
        self.threshold = 0.5
        self.threshold_source = "defect probability 0.5"
        self.score_range = (0.0, 1.0)
        self.heat_range = (0.0, None)  # attention has no common scale

    @classmethod
    def from_run(
        cls, config: MultiTaskPredictConfig, run_dir: str | Path, step_id: str, device: str = "auto"
    ) -> Dinov3Predictor:
        """The checkpoint the detect step used: ``with.checkpoint``, else the train step's (best or last)."""
        run = RunDirectory(run_dir)
        record = run.find_step(step_id)
        if config.checkpoint:
            path = Path(config.checkpoint)
        elif config.weights == "best":
            path = run.artifact_before(record, "best_checkpoint")
        else:
            path = run.artifact_before(record, "checkpoint")
        if path is None:
            raise DefectkitError(f"{run.path / record.dirname}: no checkpoint artifact before this detect step")
        return cls(config, load_checkpoint(path, resolve_device(device)))

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Prediction]:
        size = self.loaded.image_size
        results: list[Prediction] = []
        for start in range(0, len(images), self.config.batch_size):
            chunk = images[start : start + self.config.batch_size]
            raw = np.stack(
                [np.asarray(i.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for i in chunk]
            )
            tensor = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255.0)
            for j, result in enumerate(predict_batch(self.loaded, tensor, self.config.mask_threshold)):
                prediction = to_prediction(self.loaded, names[start + j], "", result)
                attention = F.interpolate(
                    torch.from_numpy(prediction.attention)[None, None].float(), size=(size, size), mode="bilinear"
                )[0, 0].numpy()
                results.append(
                    Prediction(
                        name=names[start + j],
                        image=raw[j],
                        score=prediction.defect_probability,
                        anomaly_map=attention,
                        mask=np.asarray(prediction.mask, bool),
                        predicted_class=prediction.prediction,
                        probabilities=prediction.probabilities,
                    )
                )
        return results
