"""Boxes in and out: ground truth from samples, the ``box_predictions`` artifact, box overlays.

``box_predictions`` is a folder (see docs/artifacts.md)::

    box_predictions/
      detections.jsonl   one line per image: {"id", "width", "height", "boxes": [[x0, y0, x1, y1], ...],
                         "classes": [...], "scores": [...]}, boxes in the image's own pixels
      info.json          {"classes": [...], "score_threshold": ..., "model": ...}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from defectkit.data.sample import Sample
from defectkit.errors import DataError, DefectkitError
from defectkit.io import atomic_path, read_json, write_json, write_text

DETECTIONS = "detections.jsonl"
INFO = "info.json"

#: boxes the detector found (red) and the ground truth (green), as on every overlay
PREDICTED, TRUTH = (255, 60, 40), (40, 220, 90)


def box_classes(samples: Sequence[Sample], wanted: list[str] | None, where: str) -> list[str]:
    """The classes in order: ``wanted``, else every box label found (sorted); a DataError if there are none."""
    found = sorted({box.label or s.defect_type for s in samples for box in s.boxes})
    if wanted is not None:
        unknown = sorted(set(found) - set(wanted))
        if unknown:
            raise DataError(f"{where}: the data has boxes of {', '.join(unknown)}, which classes: does not list")
        return list(wanted)
    if not found:
        raise DataError(
            f"{where}: no sample has boxes; a box detector needs data with boxes (neu-det, or synthetic kind neu)"
        )
    return found


def ground_truth(sample: Sample, classes: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes N×4 float32, labels N int64, 0-based)`` of a sample; a defective one without boxes is an error."""
    if sample.label == 1 and not sample.boxes:
        raise DataError(
            f"{where}: sample {sample.id} is defective but has no boxes; a box detector needs data with boxes "
            "(neu-det, or synthetic kind neu)"
        )
    boxes = np.array([[b.x0, b.y0, b.x1, b.y1] for b in sample.boxes], dtype=np.float32).reshape(-1, 4)
    labels = np.array([classes.index(b.label or sample.defect_type) for b in sample.boxes], dtype=np.int64)
    return boxes, labels


def record(sample_id: str, size: tuple[int, int], prediction: dict[str, np.ndarray], classes: list[str]) -> dict:
    """One line of ``detections.jsonl``."""
    return {
        "id": sample_id,
        "width": size[0],
        "height": size[1],
        "boxes": [[round(float(v), 2) for v in box] for box in prediction["boxes"]],
        "classes": [classes[int(i)] for i in prediction["labels"]],
        "scores": [round(float(s), 5) for s in prediction["scores"]],
    }


def write_predictions(folder: Path, records: list[dict], info: dict[str, Any]) -> Path:
    write_text(folder / DETECTIONS, "".join(json.dumps(r) + "\n" for r in records))
    write_json(folder / INFO, info)
    return folder


def read_predictions(folder: Path) -> tuple[dict[str, dict], dict[str, Any]]:
    """``({sample id: record}, info)``; a one-line error names a missing or malformed file."""
    path, info = Path(folder) / DETECTIONS, read_json(Path(folder) / INFO)
    if not path.is_file() or info is None:
        raise DefectkitError(f"{folder}: not a box_predictions folder (needs {DETECTIONS} and {INFO})")
    records: dict[str, dict] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            boxes = np.asarray(item["boxes"], dtype=np.float32).reshape(-1, 4)
            if not (len(boxes) == len(item["classes"]) == len(item["scores"])):
                raise ValueError("boxes, classes and scores differ in length")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise DefectkitError(f"{path}:{number}: not a detection record ({error})") from None
        records[item["id"]] = item
    return records, info


def as_arrays(item: dict, classes: list[str]) -> dict[str, np.ndarray]:
    """A record back to arrays with 0-based class indices (boxes of unknown classes are dropped)."""
    keep = [i for i, name in enumerate(item["classes"]) if name in classes]
    boxes = np.asarray(item["boxes"], dtype=np.float32).reshape(-1, 4)[keep]
    return {
        "boxes": boxes,
        "labels": np.array([classes.index(item["classes"][i]) for i in keep], dtype=np.int64),
        "scores": np.asarray(item["scores"], dtype=np.float32)[keep],
    }


def save_box_overlay(
    path: Path,
    image: Image.Image,
    prediction: dict[str, np.ndarray],
    classes: list[str],
    threshold: float,
    title: str,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> Path:
    """The image (enlarged to at least 256 px) with ground-truth boxes or mask outline in green and the
    found boxes above ``threshold`` in red, each labelled with its class and score; the title on top."""
    scale = max(1, int(np.ceil(256 / max(image.size))))
    canvas = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST)
    header = 16
    out = Image.new("RGB", (canvas.width, canvas.height + header), "white")
    out.paste(canvas, (0, header))
    draw = ImageDraw.Draw(out)
    draw.text((3, 2), title, fill=(0, 0, 0))

    def rect(box, colour):
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle((x0, y0 + header, x1 - 1, y1 - 1 + header), outline=colour, width=2)
        return x0, y0 + header

    if mask is not None and mask.any():
        from scipy import ndimage

        big = np.kron(mask.astype(np.uint8), np.ones((scale, scale), np.uint8)).astype(bool)
        edge = big & ~ndimage.binary_erosion(big)
        pixels = np.asarray(out).copy()
        pixels[header:][edge] = TRUTH
        out = Image.fromarray(pixels)
        draw = ImageDraw.Draw(out)
    if truth is not None:
        for box in truth[0]:
            rect(box, TRUTH)
    for box, label, score in zip(prediction["boxes"], prediction["labels"], prediction["scores"], strict=True):
        if score < threshold:
            continue
        x0, y0 = rect(box, PREDICTED)
        text = f"{classes[int(label)]} {score:.2f}"
        top = max(header, y0 - 11)
        draw.rectangle((x0, top, x0 + 6 * len(text) + 3, top + 10), fill=PREDICTED)
        draw.text((x0 + 2, top - 1), text, fill=(255, 255, 255))
    with atomic_path(path) as tmp:
        out.save(tmp, format="PNG")
    return path
