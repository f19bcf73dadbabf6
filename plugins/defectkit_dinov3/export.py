"""ONNX export of the multi-task model (input: RGB in [0, 1]; outputs: the four tensors of the forward pass)."""

from __future__ import annotations

from pathlib import Path

import torch

from defectkit.io import atomic_path
from defectkit_dinov3.model import MultiTaskDefectModel

OUTPUT_NAMES = ["class_logits", "defect_logit", "mask_logits", "attention"]


def export_onnx(model: MultiTaskDefectModel, path: Path, image_size: int, opset: int = 17) -> Path:
    """Export with a dynamic batch axis; the image size is fixed (the patch grid is baked into reshapes)."""
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.rand(1, 3, image_size, image_size, device=device)
    with atomic_path(path) as tmp, torch.no_grad():
        # the TorchScript exporter: needs only the onnx package (the dynamo one also wants onnxscript)
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            input_names=["images"],
            output_names=OUTPUT_NAMES,
            dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
            opset_version=opset,
            dynamo=False,
        )
    return Path(path)
