"""The Inspect tab's back end: a run's detect steps whose detector has a predictor, found through the registry.

A detector opts in by giving the object its factory returns an ``open_predictor(run_dir, step_id, device)``
method (:class:`defectkit.protocols.InteractiveDetector`); serve knows no detector by name. The predictor is
opened once per (run, step, device) and kept in :data:`MODELS`; every request reuses it. Its ``predict``
returns raw :class:`~defectkit.protocols.Prediction` records; the verdict at a threshold is drawn from them
afterwards, so moving the threshold never re-runs a model.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from defectkit.protocols import Prediction, Predictor, is_anomalous
from defectkit.protocols import heat_range as heat_range
from defectkit_serve.runinfo import RunInfo, StepInfo

__all__ = ["MODELS", "DetectorStep", "find_detectors", "get_predictor", "is_anomalous", "predict", "heat_range"]


@dataclass
class DetectorStep:
    """A finished detect step and the detector object its component builds from the step's options."""

    step: StepInfo
    detector: Any

    @property
    def name(self) -> str:
        return self.step.component


def find_detectors(run: RunInfo) -> tuple[list[DetectorStep], list[str]]:
    """The run's servable detect steps, and a note for each one that is not (plugin missing, no predictor)."""
    from defectkit.detect import interactive_detect_steps
    from defectkit.rundir import RunDirectory

    opened, notes = interactive_detect_steps(RunDirectory(run.run_dir))
    by_folder = {s.dirname: s for s in run.steps}
    return [DetectorStep(by_folder[o.record.dirname], o.detector) for o in opened], notes


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


def get_predictor(run: RunInfo, entry: DetectorStep, device: str = "auto") -> Predictor:
    """The (cached) predictor of ``entry``'s step."""
    key = (str(run.run_dir), entry.step.id, device)
    return MODELS.get(key, lambda: entry.detector.open_predictor(run.run_dir, entry.step.id, device))


def _no_grad(method: Callable) -> Callable:
    """``torch.no_grad()`` imported when a model first runs: serve starts without importing torch."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return method(*args, **kwargs)

    return wrapped


@_no_grad
def predict(predictor: Predictor, images: Sequence, names: Sequence[str]) -> list[Prediction]:
    return predictor.predict(images, names)


def title(predictor: Predictor, entry: DetectorStep) -> str:
    return getattr(predictor, "title", "") or entry.name


def score_name(predictor: Predictor) -> str:
    return getattr(predictor, "score_name", "") or "anomaly score"


def sampling(predictor: Predictor) -> dict[str, Any]:
    """Options the UI may change per request (name -> the run's value); empty: none."""
    method = getattr(predictor, "sampling", None)
    return dict(method()) if callable(method) else {}


def set_sampling(predictor: Predictor, options: dict[str, Any]) -> None:
    method = getattr(predictor, "set_sampling", None)
    if callable(method):
        method(options)
