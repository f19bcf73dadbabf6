"""Small statistics every comparison of runs needs (public: plugins use them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

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


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """The area under the ROC curve of ``scores`` for binary ``labels`` (ties count a half), in numpy.

    The Mann-Whitney U statistic over average ranks, what scikit-learn's ``roc_auc_score`` computes, for
    plugins that need the figure without scikit-learn; NaN when only one class is present.
    """
    from scipy.stats import rankdata

    truth = np.asarray(labels).ravel().astype(bool)
    values = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(values)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def choose_threshold(labels: list[int], scores: list[float], percentile: float) -> dict:
    """A default threshold on image scores: F1-adaptive with defective examples, else a percentile of the normal
    scores. Returns ``{"threshold", "method"[, "f1"]}``; a score at the threshold counts as anomalous.

    The F1-adaptive choice is scikit-learn's ``precision_recall_curve`` followed by the best F1 (ties: the
    lowest threshold), written in numpy so that a plugin without scikit-learn gets the same threshold.
    """
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(labels).astype(bool)
    if truth.any() and not truth.all():
        order = np.argsort(-values, kind="stable")
        ranked, hits = values[order], truth[order]
        last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last index of each distinct score
        true_positives = np.cumsum(hits)[last]
        precision = true_positives / (last + 1)
        recall = true_positives / true_positives[-1]
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.flatnonzero(f1 == f1.max())[-1])  # descending thresholds: the last is the lowest
        return {"threshold": float(ranked[last[best]]), "method": "f1_adaptive", "f1": float(f1[best])}
    return {
        "threshold": float(np.percentile(values[~truth], percentile)),
        "method": f"percentile_{percentile:g}_of_normal",
    }
