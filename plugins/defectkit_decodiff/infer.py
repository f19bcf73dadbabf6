"""Scoring new images with a finished run: what ``defectkit detect`` does."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from defectkit.anomaly_maps import save_map
from defectkit.data.sample import read_image
from defectkit.errors import DefectkitError
from defectkit.io import read_json, write_text
from defectkit.overlays import save_overlay
from defectkit_decodiff.config import DecoDiffDetectConfig
from defectkit_decodiff.detector import THRESHOLD_FILE, AnomalyScorer
from defectkit_decodiff.model import load_checkpoint, prepare_image, to_model_range

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Verdict:
    path: Path
    score: float
    threshold: float

    @property
    def anomalous(self) -> bool:
        return self.score >= self.threshold  # as precision_recall_curve counts the F1-adaptive threshold


def find_detect_step(run_dir: Path) -> Path:
    """The last step folder of ``run_dir`` in which a decodiff detect step wrote its threshold."""
    found = sorted(p.parent for p in run_dir.glob(f"*/{THRESHOLD_FILE}"))
    if not found:
        raise DefectkitError(
            f"{run_dir}: no decodiff detect step with a {THRESHOLD_FILE} in this run; "
            "run a recipe with train and detect steps (recipes/decodiff_tiny.yaml) first"
        )
    return found[-1]


def collect_images(inputs: list[Path]) -> list[Path]:
    """Image files named directly, and those found under named folders (recursively, sorted)."""
    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            images.append(path)
    if not images:
        raise DefectkitError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return images


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _output_names(images: list[Path]) -> list[str]:
    # file stems, made unique with the parent folder where two folders hold the same name
    stems = [p.stem for p in images]
    return [f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in images]


def load_run_scorer(
    run_dir: Path, category: str | None = None, device: str = "auto", step: Path | None = None
) -> tuple[AnomalyScorer, dict]:
    """The scorer of a finished run's detect ``step`` (default: the last) and its saved ``threshold.json``."""
    step = step or find_detect_step(run_dir)
    saved = read_json(step / THRESHOLD_FILE)
    options = dict(saved["detect_options"])
    if category is not None:
        options["category"] = category
    config = DecoDiffDetectConfig(**options)
    torch_device = _device(device)
    scorer = AnomalyScorer(load_checkpoint(run_dir / saved["checkpoint"], torch_device), config, torch_device)
    return scorer, saved


def detect_images(
    run_dir: Path,
    inputs: list[Path],
    out: Path,
    threshold: float | None = None,
    category: str | None = None,
    device: str = "auto",
) -> list[Verdict]:
    """Score ``inputs`` with the run's checkpoint and detect options; write overlays, maps and ``scores.csv``."""
    scorer, saved = load_run_scorer(run_dir, category, device)
    torch_device, config = scorer.device, scorer.config
    limit = float(saved["threshold"] if threshold is None else threshold)
    model = scorer.checkpoint.config

    paths = collect_images(inputs)
    names = _output_names(paths)
    # a fixed colour range from 0 to twice the threshold: a colour means the same in every overlay
    high = 2 * limit if limit > 0 else 1.0
    verdicts: list[Verdict] = []
    for start in range(0, len(paths), config.batch_size):
        chunk = paths[start : start + config.batch_size]
        raw = np.stack([prepare_image(read_image(p), model.image_size, model.crop_size) for p in chunk])
        images = to_model_range(raw, torch_device)
        # a file's category is unknown: the fixed one, the only one, or the classifier's
        maps, scores = scorer.score(images, scorer.classes_for([None] * len(chunk), images))
        maps = maps.cpu().numpy()
        for j, path in enumerate(chunk):
            name = names[start + j]
            verdict = Verdict(path, float(scores[j]), limit)
            verdicts.append(verdict)
            save_map(out / "anomaly_maps", name, maps[j])
            label = "ANOMALOUS" if verdict.anomalous else "normal"
            save_overlay(
                out / "overlays" / f"{name}.png",
                raw[j],
                maps[j],
                None,
                (0.0, high),
                f"{path.name}  score {verdict.score:.3f}  {label} (threshold {limit:.3f})",
            )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "score", "anomalous", "threshold"])
    writer.writerows([str(v.path), f"{v.score:.6f}", int(v.anomalous), f"{v.threshold:.6f}"] for v in verdicts)
    write_text(out / "scores.csv", buffer.getvalue())
    return verdicts
