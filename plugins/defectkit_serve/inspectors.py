"""Inference on uploaded images with a finished run's detect step, through each detector plugin's public API.

An :class:`Inspector` is loaded once per (run, step, device) and kept in :data:`MODELS`; every request reuses it.
Its :meth:`Inspector.analyse` returns raw :class:`Analysis` records (score, map, category, ...); the verdict
against a threshold is drawn from them afterwards, so moving the threshold never re-runs a model.
"""

from __future__ import annotations

import csv
import functools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from defectkit.errors import DefectkitError
from defectkit_serve.runinfo import RunInfo, StepInfo

if TYPE_CHECKING:
    import torch


@dataclass
class Analysis:
    """One image through one detector: everything the UI shows, before any threshold is applied."""

    name: str
    image: np.ndarray  # uint8 [H, W, 3], as the model saw it (resized, cropped)
    score: float
    heatmap: np.ndarray | None = None  # float [H, W]
    category: str | None = None
    category_source: str = ""
    reconstruction: np.ndarray | None = None  # uint8 [H, W, 3]
    prediction: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    mask: np.ndarray | None = None  # bool [H, W]


class Inspector:
    """A detect step made ready for single images."""

    #: the detector component, a human title, what the score means
    component = ""
    title = ""
    score_name = "anomaly score"

    def __init__(self, run: RunInfo, step: StepInfo) -> None:
        self.run, self.step = run, step
        self.threshold = 0.0
        self.threshold_source = ""
        #: the slider's range
        self.score_range = (0.0, 1.0)
        #: the heat map's colour range: fixed, so that a colour means the same in every image
        self.heat_range = (0.0, 1.0)

    def analyse(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Analysis]:
        raise NotImplementedError

    #: options the UI may change per request (name -> the run's value); empty: none
    def sampling(self) -> dict[str, Any]:
        return {}

    def set_sampling(self, options: dict[str, Any]) -> None:
        """Use ``options`` (keys of :meth:`sampling`) for the next requests; called inside the model gate."""


def _no_grad(method: Callable) -> Callable:
    """``torch.no_grad()`` imported when a model first runs: serve starts without importing torch (3 s)."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return method(*args, **kwargs)

    return wrapped


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _step_scores(step: StepInfo) -> tuple[list[int], list[float]]:
    """Labels (``good`` -> 0) and scores of the step's own ``scores.csv`` (``[category/]type/stem,score``)."""
    path = step.path / "scores.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [int(r["path"].split("/")[-2] != "good") for r in rows], [float(r["score"]) for r in rows]


def _slider_range(threshold: float, scores: Sequence[float]) -> tuple[float, float]:
    top = max([2 * threshold, *scores]) if scores else 2 * threshold
    # room above the run's highest score: a new image may score higher, and its verdict must stay movable
    top = top * 1.5 if top > 0 else 1.0
    low = min(0.0, *scores) if scores else 0.0
    return low, float(top)


class DecoDiffInspector(Inspector):
    """DeCo-Diff: anomaly map, score, the recognised category and the deviation-corrected reconstruction."""

    component = "decodiff"
    title = "DeCo-Diff"

    def __init__(self, run: RunInfo, step: StepInfo, device: str) -> None:
        super().__init__(run, step)
        from defectkit_decodiff.infer import load_run_scorer

        self.scorer, saved = load_run_scorer(run.run_dir, device=device, step=step.path)
        self._run_config = self.scorer.config  # what the run detected with; the UI's changes start from it
        self.threshold = float(saved["threshold"])
        self.threshold_source = f"{saved.get('method', 'saved')} on {saved.get('source', 'the run')}"
        self.score_range = _slider_range(self.threshold, _step_scores(step)[1])
        self.heat_range = (0.0, 2 * self.threshold if self.threshold > 0 else 1.0)  # as `defectkit detect`

    def sampling(self) -> dict[str, Any]:
        """The seed's interface: the gated fusion (where the UNet has a DoD gate), DDIM steps and start step."""
        config = self._run_config
        options: dict[str, Any] = {"sample_steps": config.sample_steps, "start_t": config.start_t}
        if self.scorer.checkpoint.config.dod_gate:
            options["fusion"] = config.fusion
        return options

    @property
    def max_start(self) -> int:
        return int(self.scorer.checkpoint.config.diffusion_steps) - 1

    def set_sampling(self, options: dict[str, Any]) -> None:
        from defectkit_decodiff.detector import AnomalyScorer

        wanted = {k: v for k, v in options.items() if k in self.sampling() and v is not None}
        config = self._run_config.model_copy(update=wanted)
        if config != self.scorer.config:  # the same checkpoint and latent codec: only the sampling differs
            scorer = self.scorer
            self.scorer = AnomalyScorer(scorer.checkpoint, config, scorer.device, codec=scorer.codec)

    @_no_grad
    def analyse(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Analysis]:
        from defectkit_decodiff.model import prepare_image, to_model_range

        scorer = self.scorer
        model = scorer.checkpoint.config
        classes = scorer.checkpoint.classes
        if scorer.config.category != "auto":
            source = "fixed by the run"
        elif len(classes) == 1:
            source = "the run's only category"
        else:
            source = "recognised by the category classifier"
        results: list[Analysis] = []
        for start in range(0, len(images), scorer.config.batch_size):
            chunk = images[start : start + scorer.config.batch_size]
            raw = np.stack([prepare_image(image, model.image_size, model.crop_size) for image in chunk])
            tensor = to_model_range(raw, scorer.device)
            indices = scorer.classes_for([None] * len(chunk), tensor)
            maps, scores, reconstructed = scorer.score_with_reconstruction(tensor, indices)
            pictures = ((reconstructed.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            for j in range(len(chunk)):
                results.append(
                    Analysis(
                        name=names[start + j],
                        image=raw[j],
                        score=float(scores[j]),
                        heatmap=maps[j].float().cpu().numpy(),
                        category=classes[int(indices[j])],
                        category_source=source,
                        reconstruction=pictures[j],
                    )
                )
        return results


class PatchKNNInspector(Inspector):
    """PatchCore-style nearest-neighbour maps against the run's memory bank."""

    component = "patch_knn"
    title = "patch_knn (PatchCore)"

    def __init__(self, run: RunInfo, step: StepInfo, device: str) -> None:
        super().__init__(run, step)
        from defectkit_decodiff.detector import choose_threshold
        from defectkit_patchknn.config import PatchKNNDetectConfig
        from defectkit_patchknn.detector import BANK_FILE
        from defectkit_patchknn.model import PatchKNNModel

        self.config = PatchKNNDetectConfig(**step.options)
        bank = run.artifact_for(step, "checkpoint")
        if bank is None:
            raise DefectkitError(
                f"{step.path}: this patch_knn detect step fitted its memory bank on the fly and did not save it; "
                "add a `train: {use: patch_knn}` step before it to serve the run"
            )
        if bank.is_dir():
            bank = bank / BANK_FILE
        self.model = PatchKNNModel.load(bank, _device(device))
        labels, scores = _step_scores(step)
        if not scores:
            raise DefectkitError(f"{step.path}: no scores.csv; the detect step did not finish")
        # patch_knn saves no threshold: the F1-best one on the step's own test scores (known labels), else the
        # 99th percentile of its normal scores: in-sample, as the label says in the UI
        chosen = choose_threshold(labels, scores, 99.0)
        self.threshold = chosen["threshold"]
        self.threshold_source = f"{chosen['method']} on the run's test scores"
        self.score_range = _slider_range(self.threshold, scores)
        self.heat_range = (0.0, 2 * self.threshold if self.threshold > 0 else 1.0)

    @_no_grad
    def analyse(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Analysis]:
        from defectkit_patchknn.detector import to_tensor

        config = self.config
        size = self.model.settings.image_size
        results: list[Analysis] = []
        for start in range(0, len(images), config.batch_size):
            chunk = images[start : start + config.batch_size]
            raw = np.stack([np.asarray(i.resize((size, size), Image.Resampling.BILINEAR)) for i in chunk])
            scored = self.model.score(to_tensor(raw), config.blur_sigma, config.image_score, config.reweight_neighbors)
            maps = scored.maps.float().cpu().numpy()
            for j in range(len(chunk)):
                results.append(Analysis(names[start + j], raw[j], float(scored.image_scores[j]), heatmap=maps[j]))
        return results


class Dinov3Inspector(Inspector):
    """The DINOv3 multi-task classifier: class, probabilities, defect probability, predicted mask, attention."""

    component = "dinov3_multitask"
    title = "DINOv3 multi-task classifier"
    score_name = "defect probability"

    def __init__(self, run: RunInfo, step: StepInfo, device: str) -> None:
        super().__init__(run, step)
        from defectkit_dinov3.checkpoint import load_checkpoint
        from defectkit_dinov3.config import MultiTaskPredictConfig

        self.config = MultiTaskPredictConfig(**step.options)
        path = Path(self.config.checkpoint) if self.config.checkpoint else run.artifact_for(step, "checkpoint")
        if path is None:
            raise DefectkitError(f"{step.path}: no checkpoint artifact before this dinov3_multitask detect step")
        self.loaded = load_checkpoint(path, _device(device))
        self.threshold = 0.5
        self.threshold_source = "defect probability 0.5"
        self.score_range = (0.0, 1.0)
        self.heat_range = (0.0, None)  # attention: each image's own range

    @_no_grad
    def analyse(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Analysis]:
        import torch
        import torch.nn.functional as F
        from defectkit_dinov3.predict import predict_batch, to_prediction

        size = self.loaded.image_size
        results: list[Analysis] = []
        for start in range(0, len(images), self.config.batch_size):
            chunk = images[start : start + self.config.batch_size]
            raw = np.stack([np.asarray(i.resize((size, size), Image.Resampling.BILINEAR)) for i in chunk])
            tensor = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255.0)
            for j, result in enumerate(predict_batch(self.loaded, tensor, self.config.mask_threshold)):
                prediction = to_prediction(self.loaded, names[start + j], "", result)
                attention = F.interpolate(
                    torch.from_numpy(prediction.attention)[None, None].float(), size=(size, size), mode="bilinear"
                )[0, 0].numpy()
                results.append(
                    Analysis(
                        name=names[start + j],
                        image=raw[j],
                        score=prediction.defect_probability,
                        heatmap=attention,
                        prediction=prediction.prediction,
                        probabilities=prediction.probabilities,
                        mask=prediction.mask,
                    )
                )
        return results


INSPECTORS: dict[str, type[Inspector]] = {
    cls.component: cls for cls in (DecoDiffInspector, PatchKNNInspector, Dinov3Inspector)
}


class ModelCache:
    """Loaded models keyed by (run directory, step id, device): loaded once, shared by every request."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: tuple[str, str, str], load: Callable[[], Any]) -> Any:
        # one lock for all: two requests for a model not yet loaded must not load it twice (GPU memory)
        with self._lock:
            if key not in self._items:
                self._items[key] = load()
                self.loads += 1
            return self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.loads = 0


MODELS = ModelCache()


def get_inspector(run: RunInfo, step: StepInfo, device: str = "auto") -> Inspector:
    """The (cached) inspector of ``step``."""
    cls = INSPECTORS[step.component]
    return MODELS.get((str(run.run_dir), step.id, device), lambda: cls(run, step, device))


def is_anomalous(score: float, threshold: float) -> bool:
    """As ``defectkit detect`` and precision_recall_curve count a threshold: a score at it is anomalous."""
    return not math.isnan(score) and score >= threshold
