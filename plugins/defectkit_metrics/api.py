"""The metrics plugin's stable public API for other plugins.

A plugin that scores its own results with the metrics' code (a classifier's figures, an LPIPS distance
inside a loss or a selection) imports from here and nothing else of ``defectkit_metrics`` except the
offline stand-in networks of :mod:`defectkit_metrics.tiny`; ``tests/test_plugin_boundaries.py``
enforces it. Importing this module imports neither torch nor the modules below: each name is imported
on first use.

What it exports:

* :func:`classification_metrics`: accuracy, macro and per-class precision/recall/F1, the confusion matrix;
* :func:`lpips_distance`: an LPIPS distance function from an extractor name or import string;
* :class:`FeatureLPIPS`: LPIPS on any feature pyramid;
* :func:`ranking_metrics`, :func:`aupro`: AUROC / AP / F1-max of scores against labels, and the per-region
  overlap curve's area, as the ``detection`` metric computes them (for a benchmark or a plugin's own maps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import lazy_exports

if TYPE_CHECKING:
    from defectkit_metrics.classification import classification_metrics
    from defectkit_metrics.detection import aupro, ranking_metrics
    from defectkit_metrics.extractors import FeatureLPIPS, lpips_distance

_SOURCES = {
    "classification_metrics": "defectkit_metrics.classification",
    "FeatureLPIPS": "defectkit_metrics.extractors",
    "lpips_distance": "defectkit_metrics.extractors",
    "aupro": "defectkit_metrics.detection",
    "ranking_metrics": "defectkit_metrics.detection",
}

__all__ = ["FeatureLPIPS", "aupro", "classification_metrics", "lpips_distance", "ranking_metrics"]

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
