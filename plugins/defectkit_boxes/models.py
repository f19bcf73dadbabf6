"""Torchvision box detectors: building one from options, checkpoint folders, batched prediction.

A checkpoint folder (the ``box_model`` artifact) holds ``model.safetensors``,
``model.json`` (everything needed to rebuild the architecture: the builder's
name, the classes, the image size, ``fcos_small``'s backbone) and, while
training, ``training.pt`` (optimizer, scheduler and epoch, read with
``weights_only=True``). A detector rebuilds the model with random weights and
loads the file: nothing is fetched again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectkit.errors import DefectkitError
from defectkit.io import atomic_dir, read_json, write_json
from defectkit_boxes.config import SMALL_MODEL, SmallBackboneConfig

WEIGHTS = "model.safetensors"
META = "model.json"
TRAINING = "training.pt"
FORMAT = "defectkit-boxes-torchvision/1"
YOLO_FORMAT = "defectkit-boxes-yolo/1"
FAMILIES = ("fasterrcnn", "retinanet", "fcos")


class SmallBackbone(nn.Module):
    """Conv stages that halve the resolution, with a top-down feature pyramid over the last three.

    Returns the three pyramid levels (strides ``2**(n-2)``, ``2**(n-1)``, ``2**n`` for ``n`` stages), each with
    ``out_channels`` channels, as torchvision's detection heads expect.
    """

    def __init__(self, config: SmallBackboneConfig) -> None:
        super().__init__()
        stages, cin = [], 3
        for cout in config.channels:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                )
            )
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, config.head_channels, 1) for c in config.channels[-3:])
        self.smooth = nn.ModuleList(
            nn.Conv2d(config.head_channels, config.head_channels, 3, padding=1) for _ in range(3)
        )
        self.out_channels = config.head_channels
        self.strides = tuple(2 ** (len(config.channels) - 2 + i) for i in range(3))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        laterals = [conv(f) for conv, f in zip(self.lateral, features[-3:], strict=True)]
        for i in (1, 0):  # top-down: coarse context added to the finer levels
            laterals[i] = laterals[i] + nn.functional.interpolate(laterals[i + 1], size=laterals[i].shape[-2:])
        return OrderedDict((str(i), conv(f)) for i, (conv, f) in enumerate(zip(self.smooth, laterals, strict=True)))


def _small_fcos(num_classes: int, image_size: int, small: SmallBackboneConfig) -> nn.Module:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    backbone = SmallBackbone(small)
    # FCOS reads each level's regression range and centre-sampling radius from its anchor size: the stride
    anchors = AnchorGenerator(tuple((s,) for s in backbone.strides), ((1.0,),) * len(backbone.strides))
    head = FCOSHead(backbone.out_channels, 1, num_classes, num_convs=small.head_convs)
    return FCOS(backbone, num_classes, min_size=image_size, max_size=image_size, anchor_generator=anchors, head=head)


def _weights_enum(builder: str, name: str | None, backbone: bool):
    if name is None:
        return None
    from torchvision.models import get_model_weights, get_weight

    if backbone:
        # the builder's own default tells which backbone family its weights come from
        import inspect

        from torchvision.models import detection

        default = inspect.signature(getattr(detection, builder)).parameters["weights_backbone"].default
        if default is None:
            raise DefectkitError(f"torchvision_boxes: {builder} takes no backbone weights; set weights_backbone: null")
        enum = type(default)
    else:
        enum = get_model_weights(builder)
    try:
        return get_weight(f"{enum.__name__}.{name}") if name != "DEFAULT" else enum.DEFAULT
    except (ValueError, KeyError, AttributeError):
        choices = ", ".join(["DEFAULT", *(w.name for w in enum)])
        raise DefectkitError(
            f"torchvision_boxes: {'weights_backbone' if backbone else 'weights'}: {builder} has no weights {name!r}; "
            f"choose from {choices}"
        ) from None


def _replace_classifier(model: nn.Module, num_classes: int) -> None:
    """Swap a pretrained model's class head for one with our classes (the box regression is kept)."""
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.fcos import FCOSClassificationHead
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead

    if isinstance(model, FasterRCNN):
        features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(features, num_classes)
    elif isinstance(model, RetinaNet):
        head = model.head.classification_head
        model.head.classification_head = RetinaNetClassificationHead(
            head.conv[0][0].in_channels, head.num_anchors, num_classes
        )
    elif isinstance(model, FCOS):
        head = model.head.classification_head
        model.head.classification_head = FCOSClassificationHead(head.conv[0].in_channels, head.num_anchors, num_classes)
    else:
        raise DefectkitError(f"torchvision_boxes: cannot replace the class head of {type(model).__name__}")


def build_model(meta: dict[str, Any], pretrained: bool = False) -> nn.Module:
    """The architecture ``meta`` describes; with ``pretrained``, its named weights (fetched by torchvision).

    Class indices are 1-based: 0 is the background for every architecture, as torchvision counts them.
    """
    builder, size, num_classes = meta["model"], int(meta["image_size"]), len(meta["classes"]) + 1
    if builder == SMALL_MODEL:
        return _small_fcos(num_classes, size, SmallBackboneConfig(**meta.get("small", {})))
    from torchvision.models import detection, list_models

    # the families whose class head _replace_classifier knows and whose transform takes min_size/max_size
    available = [name for name in list_models(module=detection) if name.startswith(FAMILIES)]
    if builder not in available:
        raise DefectkitError(
            f"torchvision_boxes: model {builder!r} is not a torchvision box detector defectkit builds; choose "
            f"{SMALL_MODEL} or one of " + ", ".join(available)
        )
    weights = _weights_enum(builder, meta.get("weights"), backbone=False) if pretrained else None
    weights_backbone = _weights_enum(builder, meta.get("weights_backbone"), backbone=True) if pretrained else None
    kwargs = {"min_size": size, "max_size": size}
    if weights is not None:
        model = getattr(detection, builder)(weights=weights, weights_backbone=weights_backbone, **kwargs)
        _replace_classifier(model, num_classes)
        return model
    return getattr(detection, builder)(
        weights=None, weights_backbone=weights_backbone, num_classes=num_classes, **kwargs
    )


def set_inference(model: nn.Module, score_threshold: float, max_detections: int) -> None:
    """Where each architecture keeps its score threshold and detection cap."""
    from torchvision.models.detection import FasterRCNN

    if isinstance(model, FasterRCNN):
        model.roi_heads.score_thresh = score_threshold
        model.roi_heads.detections_per_img = max_detections
    else:  # RetinaNet and FCOS
        model.score_thresh = score_threshold
        model.detections_per_img = max_detections


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any], training: dict[str, Any] | None) -> None:
    """Write the folder atomically: a resumed run or a detector never reads half of one."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        write_json(tmp / META, meta)
        if training is not None:
            torch.save(training, tmp / TRAINING)


@dataclass
class LoadedBoxModel:
    """A trained torchvision detector with its classes; :meth:`predict` is what detect steps and metrics call."""

    model: nn.Module
    classes: list[str]
    meta: dict[str, Any]

    def set_inference(self, score_threshold: float, max_detections: int) -> None:
        set_inference(self.model, score_threshold, max_detections)

    def predict(self, images: list[torch.Tensor], device) -> list[dict[str, np.ndarray]]:
        return predict(self, images, device)


def load_box_model(path: str | Path, device: torch.device | str = "cpu"):
    """Rebuild a trained box detector (``torchvision_boxes`` or ``yolo``) from its folder, ready to predict."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_json(path / META) if path.is_dir() else None
    if meta is not None and meta.get("format") == YOLO_FORMAT:
        from defectkit_boxes.yolo import load_yolo_model

        return load_yolo_model(path, meta, device)
    if meta is None or meta.get("format") != FORMAT or not (path / WEIGHTS).is_file():
        raise DefectkitError(
            f"{path}: not a box model folder (needs {META} of format {FORMAT} or {YOLO_FORMAT}, and {WEIGHTS}); "
            "point to a torchvision_boxes or yolo train step's checkpoint folder"
        )
    model = build_model(meta)
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    return LoadedBoxModel(model.to(device).eval(), list(meta["classes"]), meta)


def load_training_state(path: Path) -> dict[str, Any] | None:
    """Optimizer, scheduler and epoch of an unfinished training (tensors and plain values only)."""
    file = Path(path) / TRAINING
    return torch.load(file, weights_only=True) if file.is_file() else None


def to_tensor(image) -> torch.Tensor:
    """A PIL image -> ``uint8 [3, H, W]``."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


@torch.no_grad()
def predict(loaded: LoadedBoxModel, images: list[torch.Tensor], device) -> list[dict[str, np.ndarray]]:
    """``uint8 [3, H, W]`` images -> per image ``boxes`` (N×4 xyxy in its pixels), ``labels`` (0-based), ``scores``."""
    outputs = loaded.model([image.to(device).float().div(255.0) for image in images])
    results = []
    for out in outputs:
        # RetinaNet and FCOS score every class index with a sigmoid, the never-trained background 0 too: drop it
        keep = (out["labels"] >= 1).cpu().numpy()
        results.append(
            {
                "boxes": out["boxes"].cpu().numpy().astype(np.float32)[keep],
                "labels": out["labels"].cpu().numpy().astype(np.int64)[keep] - 1,
                "scores": out["scores"].cpu().numpy().astype(np.float32)[keep],
            }
        )
    return results
