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
