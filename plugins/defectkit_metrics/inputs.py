"""Reading what metrics measure: anomaly-map folders, score and prediction CSVs, generated images.

The layouts are documented for plugin authors in docs/artifacts.md. Every
problem a user can fix is a one-line :class:`~defectkit.errors.DefectkitError`
naming the file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from defectkit.anomaly_maps import sample_stem
from defectkit.data.sample import Sample
from defectkit.errors import DataError, DefectkitError


class MissingInputError(DefectkitError):
    """A metric's input (artifact, file, column) is absent or malformed."""


# -- anomaly maps -------------------------------------------------------------------


def map_key(sample: Sample, with_class: bool) -> tuple[str, ...]:
    """Where a sample's map lies under a maps folder: ``[object_class/]defect_type/stem``."""
    key = (sample.defect_type, sample_stem(sample))
    return (sample.object_class, *key) if with_class else key


def _path_key(path: str | PurePath, depth: int) -> tuple[str, ...]:
    parts = PurePath(path).with_suffix("").parts
    return tuple(parts[-depth:])


def read_maps(maps_dir: Path, samples: Sequence[Sample], with_class: bool = False) -> list[np.ndarray]:
    """One float H×W map per sample from ``maps_dir/[object_class/]defect_type/stem.npy``.

    Every map must belong to a sample and every sample must have a map.
    """
    maps_dir = Path(maps_dir)
    if not maps_dir.is_dir():
        raise MissingInputError(f"{maps_dir}: no such folder of anomaly maps")
    depth = 3 if with_class else 2
    wanted = {map_key(s, with_class): s for s in samples}
    found: dict[tuple[str, ...], Path] = {}
    for path in sorted(maps_dir.rglob("*.npy")):
        key = _path_key(path.relative_to(maps_dir), depth)
        if len(path.relative_to(maps_dir).parts) != depth or key not in wanted:
            layout = "<object_class>/<defect_type>/<stem>.npy" if with_class else "<defect_type>/<stem>.npy"
            raise MissingInputError(
                f"{path}: no test image matches this map (maps are laid out as {layout}, mirroring the test images)"
            )
        found[key] = path
    maps = []
    for key, sample in wanted.items():
        path = found.get(key)
        if path is None:
            raise MissingInputError(
                f"{maps_dir.joinpath(*key)}.npy: missing; every test image needs a map (test image {sample.id})"
            )
        maps.append(load_map(path))
    return maps


def load_map(path: Path) -> np.ndarray:
    """A 2-D float map from a ``.npy`` file (a leading axis of 1 is dropped)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MissingInputError(f"{path}: cannot be read as a .npy array ({exc})") from None
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise MissingInputError(f"{path}: an anomaly map must be a numeric H×W array, got {array.dtype} {array.shape}")
    return array.astype(np.float32, copy=False)


def read_scores(path: Path, samples: Sequence[Sample], with_class: bool = False) -> np.ndarray:
    """Image scores from a CSV with columns ``path,score``, in the order of ``samples``.

    ``path`` is matched by its last components without extension
    (``[object_class/]defect_type/stem``), so ``broken/000.png``,
    ``broken/000.npy`` and ``/data/bottle/test/broken/000.png`` all name the same image.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such scores file")
    depth = 3 if with_class else 2
    scores: dict[tuple[str, ...], float] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "score"} <= set(reader.fieldnames):
            raise MissingInputError(f"{path}: needs a header with columns path,score")
        for line, row in enumerate(reader, start=2):
            try:
                scores[_path_key(row["path"], depth)] = float(row["score"])
            except (TypeError, ValueError):
                raise MissingInputError(f"{path}: line {line}: score {row.get('score')!r} is not a number") from None
    out = []
    for sample in samples:
        key = map_key(sample, with_class)
        if key not in scores:
            raise MissingInputError(f"{path}: no score for test image {'/'.join(key)} ({sample.id})")
        out.append(scores.pop(key))
    if scores:
        extra = "/".join(next(iter(scores)))
        raise MissingInputError(f"{path}: {extra} matches no test image ({len(scores)} such rows)")
    return np.asarray(out, dtype=np.float64)


def load_masks(samples: Sequence[Sample]) -> list[np.ndarray]:
    """The ground-truth mask of each sample; an unknown mask is an error naming the sample."""
    masks = []
    for sample in samples:
        mask = sample.load_mask()
        if mask is None:
            raise DataError(f"{sample.image_path or sample.id}: has no ground-truth mask (pixel metrics need one)")
        masks.append(np.asarray(mask, dtype=bool))
    return masks


def mvtec_test_samples(category_root: Path) -> list[Sample]:
    """The test samples of one MVTec-layout category (``test/<type>/*``, ``ground_truth/<type>/<stem>_mask.png``)."""
    from defectkit.data.configs import MVTecConfig
    from defectkit.data.formats import open_mvtec

    root = Path(category_root)
    if not (root / "test").is_dir():
        raise DataError(f"{root}: not an MVTec-layout category (no test/ folder)")
    samples = open_mvtec(MVTecConfig(root=str(root.parent), category=root.name)).samples("test")
    if not samples:
        raise DataError(f"{root / 'test'}: no test images")
    return samples


# -- generated images ---------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedImage:
    """One line of a ``generated_images`` folder's metadata.jsonl."""

    path: Path
    defect_type: str
    prompt: str | None = None
    source: str | None = None
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_generated(folder: Path) -> list[GeneratedImage]:
    """The images listed in ``folder/metadata.jsonl``: ``file``, ``defect_type``, optionally ``prompt``, ``source``."""
    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        raise MissingInputError(f"{meta}: missing; a generated_images folder lists its images in metadata.jsonl")
    images = []
    for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MissingInputError(f"{meta}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "file" not in record or "defect_type" not in record:
            raise MissingInputError(f"{meta}: line {number}: needs at least 'file' and 'defect_type'")
        path = folder / record["file"]
        if not path.is_file():
            raise MissingInputError(f"{path}: listed in {meta} line {number} but missing")
        images.append(
            GeneratedImage(path, str(record["defect_type"]), record.get("prompt"), record.get("source"), record)
        )
    if not images:
        raise MissingInputError(f"{meta}: lists no images")
    return images


# -- classifier predictions -----------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One row of a ``predictions`` CSV."""

    id: str
    label: str
    prediction: str
    mask: Path | None = None


def read_predictions(path: Path) -> list[Prediction]:
    """Rows of a CSV with columns ``id,label,prediction`` and optionally ``mask`` (a path relative to the CSV)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such predictions file")
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "label", "prediction"} <= set(reader.fieldnames):
            raise MissingInputError(f"{path}: needs a header with at least id,label,prediction")
        for row in reader:
            mask = row.get("mask") or None
            rows.append(
                Prediction(row["id"], str(row["label"]), str(row["prediction"]), path.parent / mask if mask else None)
            )
    if not rows:
        raise MissingInputError(f"{path}: has no rows")
    return rows
