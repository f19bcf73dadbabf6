"""Augmentation moves masks with their images; batches are a pure function of the step."""

import torch

from defectkit_finetune.config import LoraTrainConfig
from defectkit_finetune.data import BatchSource, Record


def _records(n=4, size=32):
    records = []
    for i in range(n):
        image = torch.zeros(3, size, size, dtype=torch.uint8)
        mask = torch.zeros(1, size, size, dtype=torch.bool)
        top, left = 4 + i, 6 + 2 * i
        image[:, top : top + 8, left : left + 5] = 255  # a bright defect exactly where the mask is
        mask[:, top : top + 8, left : left + 5] = True
        records.append(Record(f"s{i}", "scratches", "steel", "p", image, mask, (size, size), (0, 0)))
    return records


def test_geometric_augmentation_moves_the_mask_with_the_image():
    augment = {"hflip": 0.5, "vflip": 0.5, "rotate": 20.0, "translate": 0.2, "brightness": 0.0, "contrast": 0.0}
    config = LoraTrainConfig(resolution=32, batch_size=4, augment=augment)
    source = BatchSource(_records(), config, process=0, processes=1)
    moved = 0
    for step in range(6):
        batch = source.batch(step)
        bright = (batch["pixels"] + 1) / 2 > 0.5
        mask = batch["masks"] > 0.5
        # the bright defect and the mask overlap almost everywhere (interpolation blurs a pixel rim)
        agree = (bright[:, :1] == mask).float().mean()
        assert agree > 0.97, agree
        originals = torch.stack([source.records[i].mask for i in source.indices(step)])
        moved += int((mask != originals).any())
    assert moved >= 4  # augmentation did move things


def test_batches_repeat_exactly_and_processes_get_different_images():
    config = LoraTrainConfig(resolution=32, batch_size=2, augment={"mixup": 0.4, "cutmix": 0.5})
    a = BatchSource(_records(), config, process=0, processes=2)
    b = BatchSource(_records(), config, process=1, processes=2)
    assert torch.equal(a.batch(3)["pixels"], a.batch(3)["pixels"])
    assert not set(a.indices(0)) & set(b.indices(0))  # one epoch of 4 images over 2 processes x 2
    assert sorted(a.indices(0) + b.indices(0)) == [0, 1, 2, 3]
