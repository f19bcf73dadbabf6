"""What each component kind's object provides: the typed contracts behind ``Component.factory``.

A recipe step calls ``factory(config)`` and then one method named after the step kind with a
:class:`~defectkit.run.StepContext` (``train(ctx)``, ``detect(ctx)`` ...); the protocols below state
exactly those methods. Two optional capabilities make a finished run interactive:

- a detector's :class:`InteractiveDetector` ``open_predictor(run_dir, step_id, device)`` gives a
  :class:`Predictor`, used by ``defectkit detect RUN_DIR IMAGES...`` and ``defectkit serve``'s Inspect tab;
- a generator's :class:`InteractiveGenerator` ``open_session(run_dir, step_id, device)`` gives a
  :class:`GenerationSession`, used by ``defectkit serve``'s Generate tab.

Tools find them with ``isinstance(obj, InteractiveDetector)`` (the protocols are runtime-checkable), never by a
component's name. :mod:`defectkit.testing` has ``check_predictor`` and ``check_session`` for plugin authors.
Light: imports no numpy, torch or PIL at import time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from defectkit.run import StepContext


# -- what a recipe step calls ---------------------------------------------------------------------------


@runtime_checkable
class Trainer(Protocol):
    """A ``train`` step: writes checkpoints into ``ctx.step_dir`` and declares them with ``ctx.add_artifact``."""

    def train(self, ctx: StepContext) -> None: ...


@runtime_checkable
class Detector(Protocol):
    """A ``detect`` step: anomaly maps and ``scores.csv`` (see :mod:`defectkit.anomaly_maps`) or predictions."""

    def detect(self, ctx: StepContext) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """A ``generate`` step: images and ``metadata.jsonl`` (see :mod:`defectkit.generated`)."""

    def generate(self, ctx: StepContext) -> None: ...


@runtime_checkable
class Metric(Protocol):
    """An ``evaluate`` step: returns ``{figure name: value}``, which the engine writes to ``metrics.json``."""

    def evaluate(self, ctx: StepContext) -> dict[str, Any]: ...


@runtime_checkable
class CaptionProvider(Protocol):
    """A ``caption`` step: writes ``captions.jsonl`` and declares the ``captions`` artifact."""

    def caption(self, ctx: StepContext) -> None: ...


#: the protocol of each component kind that is a step of its own (the others are looked up by name)
STEP_PROTOCOLS: dict[str, type] = {
    "trainer": Trainer,
    "detector": Detector,
    "generator": Generator,
    "metric": Metric,
    "caption_provider": CaptionProvider,
}


# -- detectors on new images ----------------------------------------------------------------------------


@dataclass
class Prediction:
    """One image through a detector's predictor: everything a verdict is drawn from, before any threshold.

    Optional fields are ``None`` (or empty) when the detector has no such output.
    """

    #: the name the caller gave (a file name)
    name: str
    #: uint8 ``[H, W, 3]``: the image as the model saw it (resized, cropped); maps and masks are in its frame
    image: np.ndarray
    #: the image score the threshold applies to (higher: more anomalous)
    score: float
    #: float ``[H, W]``: the anomaly (or attention) map
    anomaly_map: np.ndarray | None = None
    #: bool ``[H, W]``: a predicted defect mask, for detectors that segment
    mask: np.ndarray | None = None
    #: the predicted class, for detectors that classify, and each class's probability
    predicted_class: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    #: the object category the model scored the image as, and how it was chosen
    category: str | None = None
    category_source: str = ""
    #: uint8 ``[H, W, 3]``: a reconstruction of the image (reconstruction-based detectors)
    reconstruction: np.ndarray | None = None


def is_anomalous(score: float, threshold: float) -> bool:
    """A score at or above the threshold is anomalous (as precision_recall_curve counts it); NaN is not."""
    return not math.isnan(score) and score >= threshold


@runtime_checkable
class Predictor(Protocol):
    """A finished detect step made ready for new images; loaded once, ``predict`` called many times.

    ``predict`` returns raw :class:`Prediction` records: a verdict at any threshold is computed from them
    (:func:`is_anomalous`), so moving a threshold never runs the model again.

    Attributes:
        threshold: the default threshold on ``score`` (the run's saved or chosen one).
        threshold_source: where it came from, in words ("f1_adaptive on val").
        score_range: ``(low, high)`` a threshold sensibly moves in (a UI's slider).

    Optional attributes tools read with ``getattr`` (defaults in brackets): ``title`` (the component name),
    ``score_name`` ("anomaly score"), ``heat_range`` (``(0, 2 * threshold)``; ``(low, None)``: each image's own
    range, as for attention maps), and ``sampling() -> dict`` / ``set_sampling(options)`` for options a user
    may change per request.
    """

    threshold: float
    threshold_source: str
    score_range: tuple[float, float]

    def predict(self, images: Sequence[Image.Image], names: Sequence[str]) -> list[Prediction]: ...


@runtime_checkable
class InteractiveDetector(Detector, Protocol):
    """A detector that can score new images with a finished run's detect step."""

    def open_predictor(self, run_dir: str | Path, step_id: str, device: str = "auto") -> Predictor: ...


def heat_range(predictor: Predictor) -> tuple[float, float | None]:
    """The predictor's heat-map colour range: its own, else 0 to twice the threshold (fixed across images)."""
    own = getattr(predictor, "heat_range", None)
    if own is not None:
        return own
    threshold = float(predictor.threshold)
    return (0.0, 2 * threshold if threshold > 0 else 1.0)


# -- generators on demand -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionCapabilities:
    """What a :class:`GenerationSession` does with the optional inputs of ``generate``.

    A UI shows an input only when the session uses it, and marks it required where the session needs it.
    """

    #: fills a defect into ``image`` where ``mask`` is painted
    inpainting: bool = False
    #: ``inpainting`` is the only mode: ``image`` and ``mask`` are required
    requires_image: bool = False
    #: uses a ``control_image`` (ControlNet)
    control_image: bool = False
    #: ``control_image`` is required
    requires_control_image: bool = False
    #: honours ``negative_prompt``
    negative_prompt: bool = True


#: the keyword arguments :meth:`GenerationSession.generate` takes besides the label
GENERATE_KEYWORDS = ("prompt", "negative_prompt", "seed", "guidance", "steps", "control_image", "image", "mask")


@runtime_checkable
class GenerationSession(Protocol):
    """A finished generate step's models, loaded once for interactive generation.

    ``generate`` takes every keyword of :data:`GENERATE_KEYWORDS`; ``None`` means "the step's own value".
    ``mask`` is an ``L`` image, white where the defect goes. An input the session cannot use raises a
    :class:`~defectkit.errors.DefectkitError` saying so rather than being ignored.
    """

    labels: list[str]
    capabilities: SessionCapabilities

    def generate(
        self,
        label: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        seed: int = 0,
        guidance: float | None = None,
        steps: int | None = None,
        control_image: Image.Image | None = None,
        image: Image.Image | None = None,
        mask: Image.Image | None = None,
    ) -> Image.Image: ...


@runtime_checkable
class InteractiveGenerator(Generator, Protocol):
    """A generator that can open a session on a finished run's generate step."""

    def open_session(self, run_dir: str | Path, step_id: str, device: str = "auto") -> GenerationSession: ...


__all__ = [
    "GENERATE_KEYWORDS",
    "STEP_PROTOCOLS",
    "CaptionProvider",
    "Detector",
    "GenerationSession",
    "Generator",
    "InteractiveDetector",
    "InteractiveGenerator",
    "Metric",
    "Prediction",
    "Predictor",
    "SessionCapabilities",
    "Trainer",
    "heat_range",
    "is_anomalous",
]
