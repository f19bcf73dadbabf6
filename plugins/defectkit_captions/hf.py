"""Shared pieces of the transformers providers (BLIP-2, LLaVA): device, precision, loading, decoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from defectkit.errors import DefectkitError


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA (half the memory of a 7B model, the precision these models ship in) and
    float32 on the CPU, where half precision is slow or unsupported."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_pretrained(model_cls: Any, processor_cls: Any, model: str, dtype: torch.dtype, device: torch.device):
    """``(model, processor)`` from a hub id or a local folder, in eval mode on ``device``."""
    from huggingface_hub.errors import HFValidationError

    path = Path(model).expanduser()
    if (path.is_absolute() or model.startswith(".")) and not path.is_dir():
        raise DefectkitError(f"cannot load {model_cls.__name__} {model!r}: no such folder")
    source = str(path) if path.is_dir() else model  # "~/models/blip2" works too
    try:
        processor = processor_cls.from_pretrained(source)
        network = model_cls.from_pretrained(source, dtype=dtype)
    # transformers reports a missing repo or file as OSError, and a malformed id ("a/b/c") as HFValidationError
    except (OSError, HFValidationError) as error:
        raise DefectkitError(
            f"cannot load {model_cls.__name__} {model!r}: {str(error).splitlines()[0]} "
            "(give a Hugging Face Hub id, or a local folder written by save_pretrained)"
        ) from None
    return network.to(device).eval(), processor


def decode_new_tokens(processor: Any, output_ids: torch.Tensor, prompt_length: int) -> list[str]:
    """The generated text only: decoder-only models return the prompt (image tokens included) before it."""
    texts = processor.batch_decode(output_ids[:, prompt_length:], skip_special_tokens=True)
    return [text.strip() for text in texts]
