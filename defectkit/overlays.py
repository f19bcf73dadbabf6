"""Heat-map overlays of anomaly maps (image | image with heat map and ground-truth contour), for reports and detectors.

Public for every detector plugin: `pick_overlays` chooses which test images to draw, `save_overlay` draws one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from defectkit.io import atomic_path


def pick_overlays(defect_types: list[str], labels: list[int], count: int) -> list[int]:
    """Indices of up to ``count`` samples to draw: every defect type in turn, and at least a third normal.

    Normal images belong in the sample: a map is only convincing next to the
    maps of images without defects, drawn on the same colour scale.
    """
    by_type: dict[str, list[int]] = {}
    for i, (kind, label) in enumerate(zip(defect_types, labels, strict=True)):
        by_type.setdefault(kind if label else "", []).append(i)
    normal = by_type.pop("", [])
    # round robin over the defect types: the first of each type, then the second of each ...
    defective = [i for group in itertools.zip_longest(*by_type.values()) for i in group if i is not None]
    n_normal = min(len(normal), max(count - len(defective), count // 3))
    n_defective = min(len(defective), count - n_normal)
    return defective[:n_defective] + _spread(normal, n_normal)


def _spread(items: list[int], count: int) -> list[int]:
    if count <= 0:
        return []
    positions = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[p] for p in dict.fromkeys(positions.tolist())]


def save_overlay(
    path: Path,
    image: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    value_range: tuple[float, float],
    title: str,
) -> None:
    """Write a PNG: the image with the ground-truth contour (when known) beside the heat map over the image.

    ``value_range`` is shared by all overlays of a run so that colours compare across images.
    """
    from matplotlib.figure import Figure

    # Figure, not pyplot: no global state, no GUI backend, safe in worker threads
    figure = Figure(figsize=(6.0, 3.3), dpi=100)
    left, right = figure.subplots(1, 2)
    left.imshow(image)
    right.imshow(image)
    right.imshow(anomaly_map, cmap="jet", alpha=0.5, vmin=value_range[0], vmax=value_range[1])
    if mask is not None and mask.any():
        for axes in (left, right):
            axes.contour(mask, levels=[0.5], colors="white", linewidths=1.0)
    for axes in (left, right):
        axes.set_axis_off()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
