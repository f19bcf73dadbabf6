"""``blip2``: BLIP-2 captions with transformers (``Blip2ForConditionalGeneration``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from defectkit.devices import resolve_device
from defectkit_captions.base import CaptionProvider
from defectkit_captions.config import Blip2CaptionConfig
from defectkit_captions.hf import decode_new_tokens, load_pretrained, resolve_dtype
from defectkit_captions.templates import render, sample_fields

if TYPE_CHECKING:
    from PIL import Image

    from defectkit.data.sample import Sample


class Blip2Captioner(CaptionProvider):
    """BLIP-2 captions, optionally continuing a prompt; the model loads on first use."""

    name = "blip2"
    config: Blip2CaptionConfig

    @property
    def model_id(self) -> str:
        return self.config.model

    @cached_property
    def loaded(self) -> tuple[Any, Any]:
        """``(model, processor)``, loaded on first access (on :attr:`device`, else CUDA when available)."""
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        device = resolve_device(self.device)
        model, processor = load_pretrained(
            Blip2ForConditionalGeneration,
            Blip2Processor,
            self.config.model,
            resolve_dtype(self.config.dtype, device),
            device,
        )
        # batches mix prompts of different lengths (one per class): pad on the left so every
        # row's last token is the one generation continues from
        processor.tokenizer.padding_side = "left"
        return model, processor

    @torch.inference_mode()
    def caption_images(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[str | None]:
        """One caption per image, generated in one batch."""
        model, processor = self.loaded
        prompts = [render(self.config.prompt, sample_fields(sample)) for sample in samples]
        inputs = processor(images=list(images), text=prompts, return_tensors="pt", padding=True)
        inputs = inputs.to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        output = model.generate(
            **inputs, max_new_tokens=self.config.max_new_tokens, num_beams=self.config.num_beams, do_sample=False
        )
        # an OPT decoder returns the prompt before the caption; a Flan-T5 encoder-decoder returns only the answer
        prompt_length = 0 if model.config.text_config.is_encoder_decoder else inputs["input_ids"].shape[1]
        return list(decode_new_tokens(processor, output, prompt_length))
