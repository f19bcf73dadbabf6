"""Scoring new images with any finished detect step whose detector has a predictor: ``defectkit detect``.

The step's component is looked up in the plugin registry and built with the step's resolved options, as
the run built it; its ``open_predictor`` (:class:`defectkit.protocols.InteractiveDetector`) loads the model.
The outputs follow the detect step's own layout, so ``defectkit eval-maps OUT/anomaly_maps --scores
OUT/scores.csv`` reads them::

    OUT/anomaly_maps/<name>.npy    one float32 map per image (<name>: the path below a folder given, no suffix)
    OUT/masks/<name>.png           predicted masks, for detectors that segment
    OUT/overlays/<name>.png        the image beside its heat map, with the verdict in the title
    OUT/scores.csv                 path,score (as the detect step's scores.csv)
    OUT/verdicts.csv               path,file,score,anomalous,threshold[,category][,class,class_probability]

Also what plugin authors use to write predictors: :func:`step_scores`, :func:`score_range` (and
:func:`defectkit.devices.resolve_device` for the device).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectkit.data.base import IMAGE_SUFFIXES
from defectkit.errors import DataError, DefectkitError
from defectkit.protocols import InteractiveDetector, Prediction, Predictor, heat_range, is_anomalous
from defectkit.rundir import RunDirectory, StepRecord

#: images per ``predict`` call
BATCH = 8


# -- for predictor authors ------------------------------------------------------------------------------


def step_scores(step_dir: Path) -> tuple[list[int], list[float]]:
    """Labels (a ``good`` folder: 0, else 1) and scores of a detect step's ``scores.csv``; empty if none."""
    path = Path(step_dir) / "scores.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [int(r["path"].split("/")[-2:][0] != "good") for r in rows], [float(r["score"]) for r in rows]


def score_range(threshold: float, scores: Sequence[float] = ()) -> tuple[float, float]:
    """Where a threshold sensibly moves: from 0 (or the lowest score) to 1.5 times the larger of twice the
    threshold and the highest score (a new image may score above every test image; its verdict must stay movable).
    """
    top = max([2 * threshold, *scores]) if scores else 2 * threshold
    top = top * 1.5 if top > 0 else 1.0
    low = min(0.0, *scores) if scores else 0.0
    return float(low), float(top)


# -- finding the step -----------------------------------------------------------------------------------


@dataclass
class OpenedStep:
    """A detect step whose detector can predict, and its component (the predictor is opened on demand)."""

    run: RunDirectory
    record: StepRecord
    component: Any
    detector: InteractiveDetector

    def open(self, device: str = "auto") -> Predictor:
        return self.detector.open_predictor(self.run.path, self.record.id, device)


def interactive_detect_steps(run: RunDirectory, registry=None) -> tuple[list[OpenedStep], list[str]]:
    """The run's finished detect steps whose detector has ``open_predictor``, and a note for each other one."""
    from pydantic import ValidationError

    from defectkit.plugins import get_registry

    registry = registry or get_registry()
    found: list[OpenedStep] = []
    notes: list[str] = []
    for record in run.steps():
        if not record.done or record.kind != "detect" or not record.components:
            continue
        name = record.components[0]
        try:
            component = registry.get("detector", name)
        except DefectkitError as exc:
            notes.append(f"step {record.dirname}: {exc}")
            continue
        try:
            detector = component.create(run.step_options(record))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            notes.append(f"step {record.dirname}: the installed {name} rejects the run's option {where}: {first['msg']}")
            continue
        if isinstance(detector, InteractiveDetector):
            found.append(OpenedStep(run, record, component, detector))
        else:
            notes.append(f"step {record.dirname}: detector {name} cannot score new images (it has no open_predictor)")
    return found, notes


def find_detect_step(run_dir: str | Path, step: str | None = None) -> OpenedStep:
    """The detect step ``step`` (folder or id), else the run's last one with a predictor; one line if none."""
    run = RunDirectory(run_dir)
    found, notes = interactive_detect_steps(run)
    if step is not None:
        record = run.find_step(step)
        for opened in found:
            if opened.record.dirname == record.dirname:
                return opened
        why = next((n for n in notes if n.startswith(f"step {record.dirname}:")), None)
        raise DefectkitError(
            f"{run.path}: --step {step}: "
            + (why.split(": ", 1)[1] if why else f"{record.describe()} is not a finished detect step")
            + f"; detect steps with a predictor: {', '.join(o.record.dirname for o in found) or 'none'}"
        )
    if not found:
        steps = ", ".join(r.describe() for r in run.steps()) or "none"
        extra = f"; {'; '.join(notes)}" if notes else ""
        raise DefectkitError(
            f"{run.path}: no finished detect step whose detector can score new images (open_predictor); "
            f"steps: {steps}{extra}"
        )
    return found[-1]


# -- scoring files --------------------------------------------------------------------------------------


def collect_images(inputs: Sequence[Path]) -> list[tuple[Path, str]]:
    """``(file, output name)`` of image files named directly (name: the stem) and of those under named folders
    (name: the path below the folder without suffix, so ``test/`` gives ``hole/000`` as eval-maps reads)."""
    found: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [(p, p.relative_to(item).with_suffix("").as_posix()) for p in files]
        elif item.is_file():
            found.append((item, item.stem))
        else:
            raise DefectkitError(f"{item}: no such image file or folder")
    if not found:
        raise DefectkitError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    names = [name for _, name in found]
    # two files with one name (000.png of two folders named directly): the parent folder keeps them apart
    found = [(p, f"{p.parent.name}_{n}" if names.count(n) > 1 and "/" not in n else n) for p, n in found]
    names = [name for _, name in found]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        clash = [str(p) for p, n in found if n == twice]
        raise DefectkitError(f"{' and '.join(clash)}: both would be written as {twice}; pass one of them")
    return found


@dataclass(frozen=True)
class Verdict:
    path: Path
    name: str
    prediction: Prediction
    threshold: float

    @property
    def anomalous(self) -> bool:
        return is_anomalous(self.prediction.score, self.threshold)


def detect_files(
    predictor: Predictor,
    inputs: Sequence[Path],
    out: Path,
    threshold: float | None = None,
    title: str = "",
) -> list[Verdict]:
    """Score the images in ``inputs`` with ``predictor``; write maps, masks, overlays, scores.csv, verdicts.csv."""
    import numpy as np
    from PIL import Image

    from defectkit.anomaly_maps import save_map, write_scores
    from defectkit.data.sample import read_image
    from defectkit.io import atomic_path, write_text
    from defectkit.overlays import save_overlay
    from defectkit.pathsafe import safe_join

    files = collect_images(inputs)
    limit = float(predictor.threshold if threshold is None else threshold)
    low, high = heat_range(predictor)
    if threshold is not None and high is not None and limit > 0:
        high = 2 * limit  # a fixed scale follows the threshold the user chose: red at twice it
    verdicts: list[Verdict] = []
    for start in range(0, len(files), BATCH):
        chunk = files[start : start + BATCH]
        images = []
        for path, _ in chunk:
            try:
                images.append(read_image(path))
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's problem, said in one line
                raise DataError(f"{path}: cannot be read as an image ({exc.__class__.__name__}: {exc})") from None
        predictions = predictor.predict(images, [path.name for path, _ in chunk])
        if len(predictions) != len(chunk):
            raise RuntimeError(f"the predictor returned {len(predictions)} records for {len(chunk)} images")
        for (path, name), prediction in zip(chunk, predictions, strict=True):
            verdict = Verdict(path, name, prediction, limit)
            verdicts.append(verdict)
            anomaly_map = prediction.anomaly_map
            if anomaly_map is not None:
                save_map(out / "anomaly_maps", name, anomaly_map)
            if prediction.mask is not None:
                with atomic_path(safe_join(out / "masks", f"{name}.png")) as tmp:
                    Image.fromarray(np.asarray(prediction.mask, bool).astype(np.uint8) * 255).save(tmp, format="PNG")
            word = "ANOMALOUS" if verdict.anomalous else "normal"
            shown = anomaly_map if anomaly_map is not None else np.zeros(prediction.image.shape[:2], np.float32)
            if shown.shape != prediction.image.shape[:2]:
                shown = np.asarray(
                    Image.fromarray(np.asarray(shown, np.float32)).resize(prediction.image.shape[1::-1], Image.BILINEAR)
                )
            colours = (low, high) if high is not None else (float(np.min(shown)), float(np.max(shown)))
            save_overlay(
                safe_join(out / "overlays", f"{name.replace('/', '_')}.png"),
                prediction.image,
                shown,
                prediction.mask,
                colours,
                f"{title + ': ' if title else ''}{path.name}  score {prediction.score:.3f}  {word} "
                f"(threshold {limit:.3f})",
            )
    write_scores(out / "scores.csv", [v.name for v in verdicts], [v.prediction.score for v in verdicts])
    write_text(out / "verdicts.csv", verdicts_csv(verdicts))
    return verdicts


def verdicts_csv(verdicts: Sequence[Verdict]) -> str:
    with_category = any(v.prediction.category for v in verdicts)
    with_class = any(v.prediction.predicted_class for v in verdicts)
    header = ["path", "file", "score", "anomalous", "threshold"]
    header += ["category"] * with_category + ["class", "class_probability"] * with_class
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for v in verdicts:
        p = v.prediction
        row = [v.name, str(v.path), f"{p.score:.6f}", int(v.anomalous), f"{v.threshold:.6f}"]
        if with_category:
            row.append(p.category or "")
        if with_class:
            row += [p.predicted_class or "", f"{p.probabilities.get(p.predicted_class or '', 0.0):.6f}"]
        writer.writerow(row)
    return buffer.getvalue()
