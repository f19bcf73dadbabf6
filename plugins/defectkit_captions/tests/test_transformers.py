"""BLIP-2 and LLaVA through transformers: tiny models saved like hub checkpoints, loaded by from_pretrained.

Random weights write gibberish; these tests check the machinery: batching
through generate(), the prompt each class gets, decoding only the new tokens,
templating and the step's file.
"""

import json

import pytest
import torch

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_captions.blip2 import Blip2Captioner
from defectkit_captions.config import Blip2CaptionConfig, LlavaCaptionConfig
from defectkit_captions.llava import LlavaCaptioner
from defectkit_captions.tests import tiny_models
from defectkit_captions.tests.helpers import recipe, samples
from defectkit_captions.tests.tiny_models import SENTENCES

VOCABULARY = set(" ".join(SENTENCES).split())


def spy_generate(model, calls: list):
    """Record the batch shape of every generate() call, then generate as usual."""
    original = model.generate

    def generate(**inputs):
        calls.append(tuple(inputs["input_ids"].shape))
        output = original(**inputs)
        calls.append(tuple(output.shape))
        return output

    model.generate = generate


def test_blip2_captions_in_batches_through_generate(tiny_blip2):
    captioner = Blip2Captioner(Blip2CaptionConfig(model=str(tiny_blip2), batch_size=4, max_new_tokens=5))
    model, processor = captioner.loaded
    assert model.device.type == "cpu" and model.dtype == torch.float32
    calls: list = []
    spy_generate(model, calls)

    items = samples(2)  # 6 images: batches of 4 and 2
    records = captioner.caption_samples(items)

    # 4 query (image) tokens + <s> in, at most 5 new tokens out
    assert calls[0] == (4, 5) and calls[2] == (2, 5)
    assert calls[1][0] == 4 and 5 < calls[1][1] <= 10
    assert len(records) == 6 and [r["id"] for r in records] == [s.id for s in items]
    for record in records:
        words = record["raw"].split()
        assert 0 < len(words) <= 5 and set(words) <= VOCABULARY  # only generated words, no prompt, no specials
        assert record["caption"] == f"<{record['defect_type']}>, {record['raw']}"
        assert record["model"] == str(tiny_blip2) and record["provider"] == "blip2"


def test_blip2_prompt_is_continued_per_class(tiny_blip2):
    config = Blip2CaptionConfig(model=str(tiny_blip2), prompt="the {defect_name} defect", max_new_tokens=3)
    captioner = Blip2Captioner(config)
    calls: list = []
    spy_generate(captioner.loaded[0], calls)
    items = samples(1)  # crazing, pitted_surface, scratches: prompts of 3, 4 and 3 words, padded on the left
    texts = captioner.caption_images([s.load_image() for s in items], items)
    assert calls[0] == (3, 4 + 1 + 4)  # image tokens + <s> + the longest prompt
    assert all(0 < len(text.split()) <= 3 for text in texts)


def test_llava_follows_an_instruction_per_class(tiny_llava):
    config = LlavaCaptionConfig(
        model=str(tiny_llava),
        instruction="describe the {defect_name} defect",
        instructions={"scratches": "describe the scratches in this image of a {object_class} surface"},
        batch_size=3,
        max_new_tokens=4,
    )
    captioner = LlavaCaptioner(config)
    model, processor = captioner.loaded
    items = samples(1)
    prompts = [captioner.prompt(s, processor) for s in items]
    assert prompts == [
        "USER: <image>\ndescribe the crazing defect ASSISTANT:",
        "USER: <image>\ndescribe the pitted surface defect ASSISTANT:",
        "USER: <image>\ndescribe the scratches in this image of a steel surface ASSISTANT:",
    ]
    calls: list = []
    spy_generate(model, calls)
    texts = captioner.caption_images([s.load_image() for s in items], items)
    assert len(calls) == 2 and calls[0][0] == 3  # one batch for the three classes
    assert calls[1][1] - calls[0][1] <= 4
    assert len(texts) == 3 and all(set(text.split()) <= VOCABULARY for text in texts)


def test_llava_without_chat_template_needs_prompt_format(tmp_path):
    folder = tiny_models.save_tiny_llava(tmp_path / "llava", chat_template=None)
    with pytest.raises(DefectkitError, match="has no chat template; set `prompt_format`"):
        _ = LlavaCaptioner(LlavaCaptionConfig(model=str(folder))).loaded
    config = LlavaCaptionConfig(
        model=str(folder), prompt_format="USER: {image}\n{instruction} ASSISTANT:", max_new_tokens=2
    )
    captioner = LlavaCaptioner(config)
    item = samples(1)[0]
    assert captioner.prompt(item, captioner.loaded[1]).startswith("USER: <image>\nDescribe the crazing defect")
    assert len(captioner.caption_images([item.load_image()], [item])) == 1


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(DefectkitError, match="cannot load Blip2ForConditionalGeneration .*: no such folder"):
        _ = Blip2Captioner(Blip2CaptionConfig(model=str(tmp_path / "nowhere"))).loaded
    with pytest.raises(DefectkitError, match="cannot load LlavaForConditionalGeneration 'no-such-org/llava'"):
        _ = LlavaCaptioner(LlavaCaptionConfig(model="no-such-org/llava")).loaded  # offline: not in the local cache


def test_llava_caption_step(registered, tiny_llava, tmp_path):
    options = {"model": str(tiny_llava), "max_new_tokens": 3, "template": "{trigger} {caption}", "batch_size": 4}
    run_dir = run_recipe_dict(recipe("llava", options), tmp_path / "run")
    lines = [json.loads(line) for line in (run_dir / "01_caption" / "captions.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {line["provider"] for line in lines} == {"llava"}
    assert all(line["caption"] == f"<{line['defect_type']}> {line['raw']}".strip() for line in lines)
    metrics = json.loads((run_dir / "metrics.json").read_text())["caption"]
    assert metrics["captions"] == 6 and metrics["images_per_second"] > 0
