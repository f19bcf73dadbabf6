"""Checkpoint folders: ``model.safetensors`` + ``model.json`` (architecture, classes), and ``training.pt`` to resume.

Everything needed to rebuild the model is in the folder: a predictor never reaches the hub again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from defectkit.errors import DefectkitError
from defectkit.io import atomic_dir, read_json, write_json
from defectkit.tensorfile import load_tensors
from defectkit_dinov3.backbone import build_from_spec
from defectkit_dinov3.model import MultiTaskDefectModel

WEIGHTS = "model.safetensors"
META = "model.json"
TRAINING = "training.pt"


@dataclass
class LoadedModel:
    model: MultiTaskDefectModel
    classes: list[str]
    image_size: int
    meta: dict[str, Any]


def save_checkpoint(
    path: Path, model: MultiTaskDefectModel, meta: dict[str, Any], training: dict[str, Any] | None = None
) -> None:
    """Write a checkpoint folder atomically: a resumed run or a predictor never reads half of one."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        write_json(tmp / META, meta)
        if training is not None:
            torch.save(training, tmp / TRAINING)


def model_meta(model: MultiTaskDefectModel, classes: list[str], image_size: int, decoder_channels: int) -> dict:
    return {
        "format": "defectkit-dinov3-multitask/1",
        "backbone": model.backbone.spec.to_dict(),
        "classes": classes,
        "image_size": image_size,
        "decoder_channels": decoder_channels,
    }


def load_checkpoint(path: Path, device: torch.device | str = "cpu", dropout: float = 0.0) -> LoadedModel:
    """Rebuild the model from a checkpoint folder (architecture from ``model.json``, weights from safetensors).

    ``dropout`` matters only to a resumed training run; inference runs in eval mode.
    """
    path = Path(path)
    meta = read_json(path / META)
    if meta is None or not (path / WEIGHTS).exists():
        raise DefectkitError(
            f"{path}: not a dinov3_multitask checkpoint (needs {META} and {WEIGHTS}); point to the train step's "
            "checkpoint folder"
        )
    model = MultiTaskDefectModel(
        build_from_spec(meta["backbone"]), len(meta["classes"]), meta["decoder_channels"], dropout
    )
    model.load_state_dict(load_tensors(path / WEIGHTS))
    return LoadedModel(model.to(device).eval(), list(meta["classes"]), int(meta["image_size"]), meta)


def load_training_state(path: Path) -> dict[str, Any] | None:
    """Optimizer, epoch and loss-weight state of an unfinished run (tensors and plain values only)."""
    file = Path(path) / TRAINING
    return load_tensors(file) if file.exists() else None
