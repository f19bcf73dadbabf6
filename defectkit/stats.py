"""Small statistics every comparison of runs needs (public: plugins use them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The Student-t confidence interval of the mean of ``values`` (two or more), e.g. paired per-seed gains."""
    import numpy as np
    from scipy import stats

    n = len(values)
    if n < 2:
        raise ValueError(f"a confidence interval needs two or more values, got {n}")
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return mean - half, mean + half


def first_per_class(samples: Sequence[T], per_class: int | None) -> list[T]:
    """The first ``per_class`` samples of each ``defect_type``, in order (all of them for ``None``).

    How the comparison loops take "a few real defects per type": deterministic, so every arm and seed
    sees the same ones.
    """
    if per_class is None:
        return list(samples)
    kept, counts = [], {}
    for sample in samples:
        kind = sample.defect_type
        if counts.get(kind, 0) < per_class:
            counts[kind] = counts.get(kind, 0) + 1
            kept.append(sample)
    return kept


def choose_threshold(labels: list[int], scores: list[float], percentile: float) -> dict:
    """A default threshold on image scores: F1-adaptive with defective examples, else a percentile of the normal
    scores. Returns ``{"threshold", "method"[, "f1"]}``; a score at the threshold counts as anomalous."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(labels)
    if truth.any() and not truth.all():
        from sklearn.metrics import precision_recall_curve

        precision, recall, thresholds = precision_recall_curve(truth, values)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1[:-1]))
        return {"threshold": float(thresholds[best]), "method": "f1_adaptive", "f1": float(f1[best])}
    return {
        "threshold": float(np.percentile(values[truth == 0], percentile)),
        "method": f"percentile_{percentile:g}_of_normal",
    }
