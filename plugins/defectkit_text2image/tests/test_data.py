"""What the trainer trains on: the selected samples, their prompts, defect close-ups."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from defectkit.data.sample import Box, Sample
from defectkit.errors import DataError
from defectkit_text2image.config import Text2ImageTrainConfig
from defectkit_text2image.trainer import defect_crop, load_images, select_samples


def _sample(defect: str, mask: np.ndarray | None = None, caption: str | None = None, boxes=()) -> Sample:
    pixels = np.zeros((40, 40, 3), np.uint8)
    if mask is not None:
        pixels[mask] = 255

    def load():
        return Image.fromarray(pixels), mask

    return Sample(
        id=f"train/{defect}/{id(pixels)}",
        split="train",
        label=int(defect != "good"),
        defect_type=defect,
        object_class="steel",
        caption=caption,
        boxes=boxes,
        loader=load,
    )


def test_a_defect_crop_is_the_square_around_the_mask_times_the_margin():
    mask = np.zeros((40, 40), bool)
    mask[10:14, 20:30] = True  # 10 wide, 4 high, centred at (25, 12)
    crop = defect_crop(Image.new("L", (40, 40)), _sample("patches", mask), margin=1.5)
    assert crop.size == (15, 15)
    boxed = _sample("patches", boxes=(Box(0, 0, 8, 8, "patches"),))
    assert defect_crop(Image.new("L", (40, 40)), boxed, margin=2.0).size == (16, 16)
    # no defect region: the whole image
    assert defect_crop(Image.new("L", (40, 40)), _sample("good"), margin=1.5).size == (40, 40)


def test_prompts_come_from_captions_or_the_template():
    mask = np.zeros((40, 40), bool)
    mask[5:9, 5:9] = True
    samples = [_sample("patches", mask), _sample("scratches", mask, caption="a long bright scratch")]
    config = Text2ImageTrainConfig(resolution=16, grayscale=True)
    images, prompts = load_images(samples, config, "steel", "here")
    assert images.shape == (2, 1, 16, 16)
    assert prompts == [["a photo of patches defect on a steel surface"], ["a long bright scratch"]]
    templated = load_images(samples, config.model_copy(update={"prompts": "template"}), "steel", "here")[1]
    assert templated[1] == ["a photo of scratches defect on a steel surface"]
    with pytest.raises(DataError, match="has no caption"):
        load_images(samples, config.model_copy(update={"prompts": "caption"}), "steel", "here")


def test_sample_selection():
    good, bad = _sample("good"), _sample("patches", np.ones((40, 40), bool))
    config = Text2ImageTrainConfig()
    assert select_samples([good, bad], config, "here") == [bad]
    assert select_samples([good], config, "here") == [good]  # a captions set with no defect types
    assert select_samples([good, bad], config.model_copy(update={"include_normal": True}), "here") == [good, bad]
    with pytest.raises(DataError, match=r"classes \['scratches'\] have no images in split 'train'"):
        select_samples([good, bad], config.model_copy(update={"classes": ["scratches"]}), "here")
