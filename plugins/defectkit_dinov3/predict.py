"""Inference: the ``dinov3_multitask`` detector (test split) and :func:`predict_files` (one image, a folder).

Writes a ``predictions.csv`` (``id,label,prediction,defect_probability,p_<class>...,mask``), one predicted mask PNG
and one visualisation PNG (image, predicted mask, attention map, label with probability) per image, and a
``results.json`` summary.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from defectkit.errors import DataError, DefectkitError
from defectkit.io import atomic_path, write_bytes, write_json
from defectkit_dinov3.checkpoint import LoadedModel, load_checkpoint
from defectkit_dinov3.config import MultiTaskPredictConfig


@dataclass
class Prediction:
    """One image's result."""

    name: str  # the sample id, or the file name
    label: str  # the known class, or "" when unknown
    prediction: str
    probabilities: dict[str, float]
    defect_probability: float
    mask: np.ndarray  # bool [S, S]
    attention: np.ndarray  # float [S/p, S/p]


@torch.no_grad()
def predict_batch(loaded: LoadedModel, images: torch.Tensor, threshold: float) -> list[tuple]:
    """``images float [B, 3, S, S]`` in [0, 1] -> per image (probabilities, defect probability, mask, attention)."""
    device = next(loaded.model.parameters()).device
    out = loaded.model(images.to(device))
    probabilities = out.class_logits.float().softmax(1).cpu().numpy()
    defect = out.defect_logit.float().sigmoid().cpu().numpy()
    masks = (out.mask_logits.float().sigmoid() > threshold).squeeze(1).cpu().numpy()
    attention = out.attention.float().cpu().numpy()
    return list(zip(probabilities, defect, masks, attention, strict=True))


def to_prediction(loaded: LoadedModel, name: str, label: str, result: tuple) -> Prediction:
    probabilities, defect, mask, attention = result
    return Prediction(
        name=name,
        label=label,
        prediction=loaded.classes[int(np.argmax(probabilities))],
        probabilities={c: float(p) for c, p in zip(loaded.classes, probabilities, strict=True)},
        defect_probability=float(defect),
        mask=mask,
        attention=attention,
    )


def save_visualization(path: Path, image: np.ndarray, prediction: Prediction) -> None:
    """Four panels: the image, the predicted mask over it, the attention map, and the label with its probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = image.shape[0]
    attention = F.interpolate(
        torch.from_numpy(prediction.attention)[None, None], size=(size, size), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    axes[0].imshow(image)
    axes[0].set_title("image")
    axes[1].imshow(image)
    axes[1].imshow(np.ma.masked_where(~prediction.mask, prediction.mask), cmap="autumn", alpha=0.55, vmin=0, vmax=1)
    axes[1].set_title(f"predicted mask ({prediction.mask.mean():.1%})")
    axes[2].imshow(image)
    axes[2].imshow(attention, cmap="jet", alpha=0.5)
    axes[2].set_title("attention")
    axes[3].axis("off")
    top = sorted(prediction.probabilities.items(), key=lambda item: -item[1])[:4]
    lines = [f"{prediction.prediction}  {prediction.probabilities[prediction.prediction]:.1%}", ""]
    lines += [f"{name}: {p:.1%}" for name, p in top]
    lines += ["", f"defect: {prediction.defect_probability:.1%}"]
    if prediction.label:
        lines += [f"truth: {prediction.label}"]
    axes[3].text(0.0, 0.95, "\n".join(lines), va="top", family="monospace", fontsize=10)
    for axis in axes[:3]:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    write_bytes(path, buffer.getvalue())


class ResultWriter:
    """Collects predictions into ``out``: masks/, visualizations/, predictions.csv, results.json."""

    def __init__(self, out: Path, classes: Sequence[str], visualizations: int | None) -> None:
        self.out = out
        self.classes = list(classes)
        self.visualizations = visualizations
        self.rows: list[Prediction] = []
        self.files: dict[str, tuple[str, str | None]] = {}

    def add(self, prediction: Prediction, image: np.ndarray) -> None:
        stem = f"{len(self.rows):04d}_{Path(prediction.name).stem}"
        mask_file = f"masks/{stem}.png"
        with atomic_path(self.out / mask_file) as tmp:
            Image.fromarray(prediction.mask.astype(np.uint8) * 255).save(tmp, format="PNG")
        picture = None
        if self.visualizations is None or len(self.rows) < self.visualizations:
            picture = f"visualizations/{stem}.png"
            save_visualization(self.out / picture, image, prediction)
        self.files[prediction.name] = (mask_file, picture)
        self.rows.append(prediction)

    def finish(self) -> dict:
        """Write the CSV and the JSON summary; returns the summary."""
        header = ["id", "label", "prediction", "defect_probability", *[f"p_{c}" for c in self.classes], "mask"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in self.rows:
            probabilities = [f"{row.probabilities[c]:.6f}" for c in self.classes]
            mask_file = self.files[row.name][0]
            writer.writerow(
                [row.name, row.label, row.prediction, f"{row.defect_probability:.6f}", *probabilities, mask_file]
            )
        write_bytes(self.out / "predictions.csv", buffer.getvalue().encode("utf-8"))
        labelled = [r for r in self.rows if r.label]
        summary = {
            "images": len(self.rows),
            "classes": self.classes,
            "predicted_counts": dict(Counter(r.prediction for r in self.rows)),
            "accuracy": (sum(r.label == r.prediction for r in labelled) / len(labelled) if labelled else None),
            "results": [
                {
                    "id": r.name,
                    "label": r.label or None,
                    "prediction": r.prediction,
                    "probability": r.probabilities[r.prediction],
                    "defect_probability": r.defect_probability,
                    "mask_fraction": float(r.mask.mean()),
                    "mask": self.files[r.name][0],
                    "visualization": self.files[r.name][1],
                }
                for r in self.rows
            ],
        }
        write_json(self.out / "results.json", summary)
        return summary


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _resize(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


class MultiTaskDetector:
    """Classifies ``ctx.samples("test")`` and segments their defects; declares the ``predictions`` artifact."""

    def __init__(self, config: MultiTaskPredictConfig) -> None:
        self.config = config

    def open_predictor(self, run_dir: str | Path, step_id: str, device: str = "auto"):
        """The finished step ``step_id`` made ready for new images (``defectkit detect``, ``defectkit serve``)."""
        from defectkit_dinov3.predictor import Dinov3Predictor

        return Dinov3Predictor.from_run(self.config, run_dir, step_id, device)

    def detect(self, ctx) -> None:
        out = ctx.step_dir
        if ctx.is_main_process:
            self._detect(ctx, out)
        ctx.add_artifact("predictions", out / "predictions.csv")

    def _detect(self, ctx, out: Path) -> None:
        config = self.config
        test = ctx.samples("test")
        if not test:
            raise DataError("dinov3_multitask: the test split is empty: nothing to predict")
        if config.checkpoint:
            path = Path(config.checkpoint)
        elif config.weights == "best":
            path = ctx.artifact("best_checkpoint", required=False)
            if path is None:
                raise DefectkitError(
                    "dinov3_multitask: weights: best, but the train step kept no best checkpoint: it had no "
                    "validation split (set data.split.val_fraction), or use weights: last"
                )
        else:
            path = ctx.artifact("checkpoint")
        loaded = load_checkpoint(path, ctx.device)
        ctx.logger.info("dinov3_multitask: predicting with %s", path)
        writer = ResultWriter(out, loaded.classes, config.visualizations)
        batches = ctx.progress(
            _chunks(test, config.batch_size), total=len(test), description="dinov3", unit="images", size=len
        )
        for chunk in batches:
            images = [_resize(s.load_image(), loaded.image_size) for s in chunk]
            for sample, image, result in zip(
                chunk, images, predict_batch(loaded, _tensor(images), config.mask_threshold), strict=True
            ):
                writer.add(to_prediction(loaded, sample.id, sample.defect_type, result), image)
        summary = writer.finish()
        for entry in summary["results"][: config.figures]:
            if entry["visualization"]:
                ctx.add_figure(
                    out / entry["visualization"], f"dinov3_multitask: {entry['id']} -> {entry['prediction']}"
                )
        metrics = {"test_images": summary["images"], "weights": "given" if config.checkpoint else config.weights}
        if summary["accuracy"] is not None:
            metrics["accuracy"] = round(summary["accuracy"], 4)
        ctx.log_metrics(metrics)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, or found (recursively, sorted) in named folders."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise DefectkitError(f"{item}: no such image file or folder")
    if not files:
        raise DefectkitError(f"no images found in {', '.join(map(str, inputs))}")
    return files


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    batch_size: int = 16,
    threshold: float = 0.5,
    device: str = "cpu",
) -> dict:
    """Predict one image, a folder or a list of them; writes the same outputs as the detector into ``out``."""
    from defectkit.data.sample import read_image

    loaded = load_checkpoint(Path(checkpoint), device)
    writer = ResultWriter(Path(out), loaded.classes, None)
    for chunk in _chunks(image_files(inputs), batch_size):
        images = [_resize(read_image(p), loaded.image_size) for p in chunk]
        for file, image, result in zip(chunk, images, predict_batch(loaded, _tensor(images), threshold), strict=True):
            writer.add(to_prediction(loaded, str(file), "", result), image)
    return writer.finish()
