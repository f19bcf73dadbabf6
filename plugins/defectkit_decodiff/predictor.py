"""DeCo-Diff on new images: the :class:`~defectkit.protocols.Predictor` of a finished decodiff detect step.

``DecoDiffDetector.open_predictor(run_dir, step_id, device)`` loads the step's checkpoint with the options and
threshold it saved in ``threshold.json``; ``defectkit detect`` and ``defectkit serve`` use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from defectkit.detect import score_range, step_scores
from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError
from defectkit.io import read_json
from defectkit.protocols import Prediction
from defectkit.rundir import RunDirectory
from defectkit_decodiff.config import DecoDiffDetectConfig
from defectkit_decodiff.detector import THRESHOLD_FILE, AnomalyScorer
from defectkit_decodiff.model import load_checkpoint, prepare_image, to_model_range


class DecoDiffPredictor:
    """Anomaly map, score, the recognised category and the deviation-corrected reconstruction of each image."""

    title = "DeCo-Diff"
    score_name = "anomaly score"

    def __init__(self, run_dir: str | Path, step_id: str, device: str = "auto", category: str | None = None) -> None:
        run = RunDirectory(run_dir)
        record = run.find_step(step_id)
        step_dir = run.path / record.dirname
        saved = read_json(step_dir / THRESHOLD_FILE)
        if not saved:
            raise DefectkitError(
                f"{step_dir}: no {THRESHOLD_FILE}: this decodiff detect step did not finish; run it again"
            )
        options = dict(saved["detect_options"])
        if category is not None:
            options["category"] = category
        config = DecoDiffDetectConfig(**options)
        device = resolve_device(device)
        self.scorer = AnomalyScorer(load_checkpoint(run.path / saved["checkpoint"], device), config, device)
        self._run_config = config  # what the run detected with; sampling changes start from it
        self.threshold = float(saved["threshold"])
        self.threshold_source = f"{saved.get('method', 'saved')} on {saved.get('source', 'the run')}"
        self.score_range = score_range(self.threshold, step_scores(step_dir)[1])
        self.heat_range = (0.0, 2 * self.threshold if self.threshold > 0 else 1.0)

    # -- options a user may change per request (seed 003's interface) --

    def sampling(self) -> dict[str, Any]:
        """The gated fusion (where the UNet has a DoD gate), DDIM steps and start step, at the run's values."""
        config = self._run_config
        options: dict[str, Any] = {"sample_steps": config.sample_steps, "start_t": config.start_t}
        if self.scorer.checkpoint.config.dod_gate:
            options["fusion"] = config.fusion
        return options

    @property
    def max_start(self) -> int:
        return int(self.scorer.checkpoint.config.diffusion_steps) - 1

    def set_sampling(self, options: dict[str, Any]) -> None:
        """Use ``options`` (keys of :meth:`sampling`; ``{}``: the run's) for the next ``predict`` calls."""
        wanted = {k: v for k, v in options.items() if k in self.sampling() and v is not None}
        config = self._run_config.model_copy(update=wanted)
        if config != self.scorer.config:  # the same checkpoint and latent codec: only the sampling differs
            scorer = self.scorer
            self.scorer = AnomalyScorer(scorer.checkpoint, config, scorer.device, codec=scorer.codec)

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Prediction]:
        scorer = self.scorer
        model = scorer.checkpoint.config
        classes = scorer.checkpoint.classes
        if scorer.config.category != "auto":
            source = "fixed by the run"
        elif len(classes) == 1:
            source = "the run's only category"
        else:
            source = "recognised by the category classifier"
        results: list[Prediction] = []
        for start in range(0, len(images), scorer.config.batch_size):
            chunk = images[start : start + scorer.config.batch_size]
            raw = np.stack([prepare_image(image, model.image_size, model.crop_size) for image in chunk])
            tensor = to_model_range(raw, scorer.device)
            # a new image's category is unknown: the fixed one, the only one, or the classifier's
            indices = scorer.classes_for([None] * len(chunk), tensor)
            maps, scores, reconstructed = scorer.score_with_reconstruction(tensor, indices)
            pictures = ((reconstructed.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            for j in range(len(chunk)):
                results.append(
                    Prediction(
                        name=names[start + j],
                        image=raw[j],
                        score=float(scores[j]),
                        anomaly_map=maps[j].float().cpu().numpy(),
                        category=classes[int(indices[j])],
                        category_source=source,
                        reconstruction=pictures[j],
                    )
                )
        return results
