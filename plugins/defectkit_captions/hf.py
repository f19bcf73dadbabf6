"""Shared pieces of the transformers providers (BLIP-2, LLaVA): device, precision, loading, decoding."""

from __future__ import annotations

from typing import Any

import torch

from defectkit.errors import DefectkitError


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA (half the memory of a 7B model, the precision these models ship in) and
    float32 on the CPU, where half precision is slow or unsupported."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_pretrained(model_cls: Any, processor_cls: Any, model: str, dtype: torch.dtype, device: torch.device):
    """``(model, processor)`` from a hub id or a local folder, in eval mode on ``device``."""
    try:
        processor = processor_cls.from_pretrained(model)
        network = model_cls.from_pretrained(model, dtype=dtype)
    except OSError as error:  # transformers reports a missing repo, folder or file as OSError
        raise DefectkitError(
            f"cannot load {model_cls.__name__} {model!r}: {str(error).splitlines()[0]} "
            "(give a Hugging Face Hub id, or a local folder written by save_pretrained)"
        ) from None
    return network.to(device).eval(), processor


def decode_new_tokens(processor: Any, output_ids: torch.Tensor, prompt_length: int) -> list[str]:
    """The generated text only: decoder-only models return the prompt (image tokens included) before it."""
    texts = processor.batch_decode(output_ids[:, prompt_length:], skip_special_tokens=True)
    return [text.strip() for text in texts]
