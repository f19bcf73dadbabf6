"""The ``yolo`` trainer and detector: ultralytics YOLO (AGPL-3.0), an optional extra (``defectkit[yolo]``).

Training goes through ultralytics' own public API (``YOLO(model).train``): its trainer owns the devices
(one process, or its own DDP over several GPUs), the epochs, the validation after each epoch, ``last.pt``
and ``--resume``. Ultralytics' internals change from release to release; its public API does not.

The handed-on ``box_model`` folder is ours: ``model.safetensors`` (the best epoch's weights), ``model.yaml``
(the architecture, ultralytics' parsed YAML with our class count) and ``model.json``. A detector rebuilds the
model from the YAML and loads the tensors: no pickle from a file is unpickled to detect. (Resuming an
interrupted training reads ultralytics' ``last.pt``, a pickle this same step wrote.)

Offline (the default) sets ``YOLO_OFFLINE=1`` before ultralytics is imported, which turns its connectivity
check off and with it the usage events, the pip update check and every download attempt that first asks
whether the machine is online; training runs with ``plots=False`` (the plots would fetch Arial.ttf) and
``amp=False`` (on a GPU the AMP check fetches yolo26n.pt). One call ignores ``YOLO_OFFLINE``: the dataset
check (``ultralytics.data.utils.check_det_dataset``) always calls ``check_font("Arial.ttf")``, which asks
GitHub with ``requests.head`` whether the font exists; offline, that call is replaced by a no-op for the
duration of the training (:func:`_no_font_download`). The tests run training with every socket refused.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectkit.errors import DataError, DefectkitError
from defectkit.io import atomic_dir, write_json, write_text
from defectkit_boxes.config import YoloTrainConfig
from defectkit_boxes.models import META, WEIGHTS, YOLO_FORMAT
from defectkit_boxes.records import box_classes, ground_truth

INSTALL = "pip install 'defectkit[yolo]'"
CHECKPOINT_DIR = "checkpoint"


def import_yolo(offline: bool = True):
    """ultralytics' ``YOLO`` class, or a one-line error naming the extra to install."""
    if offline:
        # read once, when ultralytics.utils is first imported (so in a process that imported ultralytics
        # before this step, the user's own YOLO_OFFLINE decides)
        os.environ["YOLO_OFFLINE"] = "1"
    try:
        from ultralytics import YOLO
    except ImportError:
        raise DefectkitError(
            f"the yolo component needs ultralytics (AGPL-3.0), which is not installed: {INSTALL}"
        ) from None
    return YOLO


def check_installed(config: Any) -> Any:
    """Factory guard: a missing extra stops the step before anything runs."""
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        raise DefectkitError(f"the yolo component needs ultralytics (AGPL-3.0), which is not installed: {INSTALL}")
    return config


def _yolo_label_lines(boxes: np.ndarray, labels: np.ndarray, width: int, height: int) -> str:
    """YOLO's label format: ``class cx cy w h``, normalised to the image size."""
    lines = []
    for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
        cx, cy, w, h = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{int(label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "".join(line + "\n" for line in lines)


def write_yolo_dataset(root: Path, splits: dict[str, list], classes: list[str], where: str) -> Path:
    """Write ``images/<split>/``, ``labels/<split>/`` and ``data.yaml`` in ultralytics' layout; returns the YAML."""
    import yaml

    for split, samples in splits.items():
        for index, sample in enumerate(samples):
            image = sample.load_image()
            boxes, labels = ground_truth(sample, classes, where)
            stem = f"{index:05d}_{Path(sample.id).stem}"
            path = root / "images" / split / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path)
            write_text(root / "labels" / split / f"{stem}.txt", _yolo_label_lines(boxes, labels, *image.size))
    data = {"path": str(root), **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(classes))}
    write_text(root / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


@contextlib.contextmanager
def _no_font_download(offline: bool):
    """Offline, ultralytics' dataset check must not look for Arial.ttf on GitHub (training draws no plots)."""
    if not offline:
        yield
        return
    import ultralytics.data.utils as data_utils

    original = data_utils.check_font
    data_utils.check_font = lambda *args, **kwargs: None
    try:
        yield
    finally:
        data_utils.check_font = original


def _resolve_model(name: str, offline: bool) -> str:
    """A model YAML or weights: a path that exists, an ultralytics YAML name, or (online) a weights name."""
    if Path(name).exists():
        return str(Path(name))
    if name.endswith((".yaml", ".yml")):
        return name  # ultralytics resolves its own model YAMLs from the package, offline
    if offline:
        raise DefectkitError(
            f"yolo: model {name!r} is neither a file nor a model YAML, and offline: true forbids downloading weights; "
            "give a local .pt path, a YAML such as yolo11n.yaml, or set offline: false"
        )
    return name


class YoloTrainer:
    """Trains with ultralytics on the recipe's boxes; hands the best epoch on as the ``box_model`` artifact."""

    def __init__(self, config: YoloTrainConfig | None = None) -> None:
        self.config = check_installed(config or YoloTrainConfig())

    def train(self, ctx) -> None:
        c = self.config
        YOLO = import_yolo(c.offline)
        where = f"yolo ({c.train_split})"
        train = [s for s in ctx.samples(c.train_split) if c.include_good or s.label == 1]
        if not train:
            raise DataError(f"{where}: the split is empty; check the recipe's data: block")
        val = ctx.samples(c.val_split)
        if not val:
            raise DataError(
                f"yolo: the validation split {c.val_split!r} is empty; set data.split.val_fraction (e.g. 0.1)"
            )
        classes = box_classes(train, c.classes, where)
        path = ctx.step_dir / CHECKPOINT_DIR
        runs = ctx.step_dir / "ultralytics"
        last = runs / "train" / "weights" / "last.pt"
        started = time.perf_counter()
        if ctx.is_main_process:
            if ctx.resume and last.is_file():
                ctx.logger.info("yolo: resuming ultralytics' training from %s", last)
                model = YOLO(str(last))
                self._log_epochs(ctx, model)
                with _no_font_download(c.offline):
                    model.train(resume=True)
            else:
                data_yaml = write_yolo_dataset(ctx.step_dir / "dataset", {"train": train, "val": val}, classes, where)
                model = YOLO(_resolve_model(c.model, c.offline))
                self._log_epochs(ctx, model)
                args = {
                    "data": str(data_yaml),
                    "epochs": c.epochs,
                    "imgsz": c.image_size,
                    "batch": c.batch_size,
                    "workers": 0,
                    "device": c.device
                    if c.device is not None
                    else ("cpu" if ctx.device.type == "cpu" else ctx.device.index or 0),
                    "project": str(runs),
                    "name": "train",
                    "exist_ok": True,
                    "seed": ctx.seed,
                    "deterministic": True,
                    "verbose": False,
                    **({"lr0": c.lr} if c.lr is not None else {}),
                    **({"plots": False, "amp": False} if c.offline else {}),
                    **c.train_args,
                }
                try:
                    with _no_font_download(c.offline):
                        model.train(**args)
                except SyntaxError as error:  # ultralytics' answer to an unknown or mistyped argument
                    raise DefectkitError(f"yolo: train_args: {str(error).strip().splitlines()[0]}") from None
            save_yolo_model(path, model.model, classes, c.image_size)
            metrics = {
                "train_images": len(train),
                "val_images": len(val),
                "classes": len(classes),
                "epochs": c.epochs,
                "train_seconds": round(time.perf_counter() - started, 1),
            }
            results = getattr(model.trainer, "metrics", None) or {}
            for key, name in (("metrics/mAP50(B)", "val_map50"), ("metrics/mAP50-95(B)", "val_map50_95")):
                if key in results:
                    metrics[name] = round(float(results[key]), 4)
            ctx.log_metrics(metrics)
        ctx.accelerator.wait_for_everyone()
        ctx.add_artifact("box_model", path)

    @staticmethod
    def _log_epochs(ctx, model) -> None:
        """ultralytics' per-epoch losses and validation mAP onto the run's curves."""

        def on_fit_epoch_end(trainer) -> None:
            epoch = trainer.epoch + 1
            if epoch > trainer.epochs:  # the final validation of the best weights calls it once more
                return
            for name, value in trainer.label_loss_items(trainer.tloss, prefix="train").items():
                ctx.log_scalar(name, float(value), epoch)
            for name, value in (trainer.metrics or {}).items():
                ctx.log_scalar(name.replace("(B)", ""), float(value), epoch)
            ctx.logger.info("yolo: epoch %d of %d", epoch, trainer.epochs)

        model.add_callback("on_fit_epoch_end", on_fit_epoch_end)


def save_yolo_model(path: Path, model: torch.nn.Module, classes: list[str], image_size: int) -> None:
    """The trained model as safetensors + its architecture YAML, written atomically."""
    import yaml
    from safetensors.torch import save_file

    architecture = dict(model.yaml)
    architecture["nc"] = len(classes)
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        write_text(tmp / "model.yaml", yaml.safe_dump(architecture, sort_keys=False))
        write_json(tmp / META, {"format": YOLO_FORMAT, "classes": classes, "image_size": image_size})


@dataclass
class LoadedYoloModel:
    """A trained YOLO detector with its classes, predicting through ultralytics (letterbox, NMS)."""

    yolo: Any
    classes: list[str]
    meta: dict[str, Any]
    score_threshold: float = 0.05
    max_detections: int = 100

    def set_inference(self, score_threshold: float, max_detections: int) -> None:
        self.score_threshold, self.max_detections = score_threshold, max_detections

    def predict(self, images: list[torch.Tensor], device) -> list[dict[str, np.ndarray]]:
        # ultralytics takes HWC BGR arrays (OpenCV's order)
        arrays = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1]) for image in images]
        results = self.yolo.predict(
            arrays,
            imgsz=int(self.meta["image_size"]),
            conf=self.score_threshold,
            max_det=self.max_detections,
            device="cpu" if torch.device(device).type == "cpu" else torch.device(device).index or 0,
            verbose=False,
        )
        return [
            {
                "boxes": r.boxes.xyxy.cpu().numpy().astype(np.float32),
                "labels": r.boxes.cls.cpu().numpy().astype(np.int64),
                "scores": r.boxes.conf.cpu().numpy().astype(np.float32),
            }
            for r in results
        ]


def load_yolo_model(path: Path, meta: dict[str, Any], device) -> LoadedYoloModel:
    """Rebuild from ``model.yaml`` (offline, random weights) and load ``model.safetensors``."""
    from safetensors.torch import load_file

    YOLO = import_yolo(offline=True)
    yolo = YOLO(str(path / "model.yaml"), task="detect")
    yolo.model.load_state_dict(load_file(str(path / WEIGHTS)))
    yolo.model.names = dict(enumerate(meta["classes"]))
    yolo.model.eval()
    return LoadedYoloModel(yolo, list(meta["classes"]), meta)


class YoloDetector:
    """The ``yolo`` detector: the ``torchvision_boxes`` detect step on a yolo ``box_model`` folder."""

    def __init__(self, config=None) -> None:
        from defectkit_boxes.detect import BoxDetector

        self._detector = BoxDetector(check_installed(config))

    def detect(self, ctx) -> None:
        self._detector.detect(ctx)
