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


def _two_flat_records(size=16):
    """Two images of one class: flat 40 and flat 200, masks on the left and the right half."""
    records = []
    for i, (value, half) in enumerate(((40, slice(0, size // 2)), (200, slice(size // 2, size)))):
        image = torch.full((3, size, size), value, dtype=torch.uint8)
        mask = torch.zeros(1, size, size, dtype=torch.bool)
        mask[:, :, half] = True
        records.append(Record(f"s{i}", "scratches", "steel", "p", image, mask, (size, size), (0, 0)))
    return records


def _mixed(augment):
    config = LoraTrainConfig(resolution=16, batch_size=2, augment={"hflip": 0.0, "rotate": 0.0, "translate": 0.0,
                                                                      "brightness": 0.0, "contrast": 0.0, **augment})
    records = _two_flat_records()
    source = BatchSource(records, config, process=0, processes=1)
    images = torch.stack([r.image.float() / 255 for r in records])
    masks = torch.stack([r.mask.float() for r in records])
    torch.manual_seed(3)
    return images, masks, *source._mix(records, images, masks)


def test_cutmix_pastes_a_square_of_the_partner_into_image_and_mask_alike():
    images, masks, mixed, mixed_masks = _mixed({"cutmix": 1.0})
    for i, j in ((0, 1), (1, 0)):
        from_partner = (mixed[i, 0] - images[j, 0]).abs() < 1e-6
        assert from_partner.any() and not from_partner.all()
        rows, cols = from_partner.nonzero(as_tuple=True)
        square = torch.zeros_like(from_partner)
        square[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(from_partner, square) and rows.max() - rows.min() == cols.max() - cols.min()
        assert torch.equal(mixed_masks[i, 0][square], masks[j, 0][square])  # the mask came with the pixels
        assert torch.equal(mixed_masks[i, 0][~square], masks[i, 0][~square])


def test_mixup_blends_images_by_one_weight_and_keeps_both_masks_weighted():
    images, masks, mixed, mixed_masks = _mixed({"mixup": 0.4})
    for i, j in ((0, 1), (1, 0)):
        lam = float((mixed[i, 0, 0, 0] - images[j, 0, 0, 0]) / (images[i, 0, 0, 0] - images[j, 0, 0, 0]))
        assert 0.0 < lam < 1.0
        torch.testing.assert_close(mixed[i], lam * images[i] + (1 - lam) * images[j])
        torch.testing.assert_close(mixed_masks[i], torch.maximum(masks[i] * lam, masks[j] * (1 - lam)))
    assert not torch.equal(mixed[0], images[0])
