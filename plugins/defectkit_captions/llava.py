"""``llava``: LLaVA following an instruction per defect class, with transformers (``LlavaForConditionalGeneration``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError
from defectkit_captions.base import CaptionProvider
from defectkit_captions.config import LlavaCaptionConfig
from defectkit_captions.hf import decode_new_tokens, load_pretrained, resolve_dtype
from defectkit_captions.templates import render, sample_fields

if TYPE_CHECKING:
    from PIL import Image

    from defectkit.data.sample import Sample


class LlavaCaptioner(CaptionProvider):
    """LLaVA answers to the class's instruction; the model loads on first use."""

    name = "llava"
    config: LlavaCaptionConfig

    @property
    def model_id(self) -> str:
        return self.config.model

    @cached_property
    def loaded(self) -> tuple[Any, Any]:
        """``(model, processor)``, loaded on first access (on :attr:`device`, else CUDA when available)."""
        from transformers import LlavaForConditionalGeneration, LlavaProcessor

        device = resolve_device(self.device)
        model, processor = load_pretrained(
            LlavaForConditionalGeneration,
            LlavaProcessor,
            self.config.model,
            resolve_dtype(self.config.dtype, device),
            device,
        )
        if self.config.prompt_format is None and not getattr(processor, "chat_template", None):
            raise DefectkitError(
                f"llava: the processor of {self.config.model!r} has no chat template; set `prompt_format`, "
                "e.g. 'USER: {image}\\n{instruction} ASSISTANT:'"
            )
        # instructions differ in length per class: pad on the left so generation continues every row's prompt
        processor.tokenizer.padding_side = "left"
        return model, processor

    def prompt(self, sample: Sample, processor: Any) -> str:
        """The full text prompt for one sample: the class's instruction in the model's conversation format."""
        instruction = render(self.config.instruction_for(sample.defect_type), sample_fields(sample))
        if self.config.prompt_format is not None:
            return self.config.prompt_format.format(image=processor.image_token, instruction=instruction)
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True)

    @torch.inference_mode()
    def caption_images(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[str | None]:
        """One answer per image, generated in one batch."""
        model, processor = self.loaded
        prompts = [self.prompt(sample, processor) for sample in samples]
        inputs = processor(images=list(images), text=prompts, return_tensors="pt", padding=True).to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        output = model.generate(
            **inputs, max_new_tokens=self.config.max_new_tokens, num_beams=self.config.num_beams, do_sample=False
        )
        return list(decode_new_tokens(processor, output, inputs["input_ids"].shape[1]))
