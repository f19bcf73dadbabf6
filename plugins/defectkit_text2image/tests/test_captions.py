"""Several captions per image (COCO's five): one drawn per image and epoch, all of them used over the epochs."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from defectkit.testing import run_recipe_dict
from defectkit_text2image.tests.helpers import TRAIN
from defectkit_text2image.trainer import Text2ImageTrainer


def test_one_of_several_captions_is_drawn_per_epoch(tmp_path, monkeypatch):
    import datasets

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)) for _ in range(4)]
    captions = [[f"image {i} caption {k}" for k in range(5)] for i in range(4)]
    datasets.Dataset.from_dict({"image": images, "answer": captions}).save_to_disk(str(tmp_path / "coco"))

    drawn: list[torch.Tensor] = []
    original = Text2ImageTrainer._epoch_captions

    def record(self, all_ids, offsets, epoch):
        ids = original(self, all_ids, offsets, epoch)
        rows = [int((all_ids == row).all(dim=1).nonzero()[0]) for row in ids]
        drawn.append(torch.tensor(rows) - torch.from_numpy(offsets[:-1]))  # which caption of each image
        return ids

    monkeypatch.setattr(Text2ImageTrainer, "_epoch_captions", record)
    options = {key: value for key, value in TRAIN.items() if key not in ("classes", "grayscale")}
    recipe = {
        "version": 1,
        "name": "coco-like",
        "device": "cpu",
        "data": {"format": "hf", "root": str(tmp_path / "coco"), "with": {"preset": "coco"}},
        "steps": [{"train": {"use": "text2image_scratch", "with": {**options, "epochs": 6, "prompts": "caption"}}}],
    }
    run_recipe_dict(recipe, tmp_path / "run")
    choices = torch.stack(drawn)  # [epochs, images]
    assert choices.shape == (6, 4) and bool(((choices >= 0) & (choices < 5)).all())
    assert len({tuple(row.tolist()) for row in choices}) > 1  # a new draw each epoch
    assert len(set(choices.flatten().tolist())) >= 3  # over the epochs, several of the five are used
