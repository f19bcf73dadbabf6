"""The anomaly-map artifact layout every detector writes and every detection metric reads.

A detect step writes ``anomaly_maps/[object_class/]defect_type/stem.npy`` (one
float32 H×W map per test image; the class level only when the samples span
several categories) and ``scores.csv`` (``path,score``, path without the
suffix). ``defectkit eval-maps`` and the ``detection`` metric read the same
layout; docs/artifacts.md describes it for plugin authors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from defectkit.data.sample import Sample
from defectkit.errors import DataError
from defectkit.io import atomic_path, write_text
from defectkit.pathsafe import check_name, safe_join

if TYPE_CHECKING:
    import numpy as np


def sample_stem(sample: Sample) -> str:
    """The file stem of a sample's image (its id's stem for samples with no file)."""
    return (sample.image_path or PurePath(sample.id)).stem


def map_names(samples: Sequence[Sample], who: str) -> list[str]:
    """``[object_class/]defect_type/stem`` for each sample; two samples with one name are a DataError.

    Each part must be a plain file or folder name (a DataError naming the sample otherwise), so that no
    map is written outside the maps folder.
    """
    several = len({s.object_class for s in samples}) > 1
    for s in samples:
        where = f"{who}: test image {s.image_path or s.id}"
        check_name(s.defect_type, where, "defect type")
        check_name(sample_stem(s), where, "file stem")
        if several:
            check_name(s.object_class, where, "category")
    names = [(f"{s.object_class}/" if several else "") + f"{s.defect_type}/{sample_stem(s)}" for s in samples]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise DataError(
            f"{who}: two test images map to the output name {twice} ([category/]defect type/file stem); "
            "rename one of the files"
        )
    return names


def save_map(maps_dir: Path, name: str, anomaly_map: np.ndarray) -> Path:
    """Write one map as ``maps_dir/name.npy`` (float32, atomically)."""
    import numpy as np

    path = safe_join(maps_dir, f"{name}.npy")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(anomaly_map, dtype=np.float32), allow_pickle=False)
    return path


def write_scores(path: Path, names: Sequence[str], scores: Sequence[float]) -> Path:
    """Write ``scores.csv`` (``path,score``) atomically."""
    rows = "".join(f"{name},{score:.6f}\n" for name, score in zip(names, scores, strict=True))
    return write_text(path, "path,score\n" + rows)
