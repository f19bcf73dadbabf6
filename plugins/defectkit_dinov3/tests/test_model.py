"""Backbones through from_pretrained, the model's shapes, losses, augmentation and ONNX parity."""

import numpy as np
import pytest
import torch

from defectkit_dinov3.augment import PairedAugment
from defectkit_dinov3.backbone import dinov2_backbone, dinov3_backbone
from defectkit_dinov3.config import AugmentConfig, DINOv2BackboneConfig, DINOv3BackboneConfig
from defectkit_dinov3.losses import (
    DynamicWeights,
    UncertaintyWeights,
    class_weights,
    dice_loss,
    focal_loss,
    segmentation_loss,
)
from defectkit_dinov3.model import MultiTaskDefectModel
from defectkit_dinov3.tests.tiny import TINY_DINOV2, TINY_DINOV3

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_dinov3_from_pretrained_folder_exposes_the_patch_grid(tmp_path):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    DINOv3ViTModel(DINOv3ViTConfig(**TINY_DINOV3)).save_pretrained(tmp_path / "dinov3")
    backbone = dinov3_backbone(DINOv3BackboneConfig(model=str(tmp_path / "dinov3")))
    assert (backbone.patch_size, backbone.num_prefix_tokens) == (16, 5)  # CLS + 4 registers, patch 16
    images = torch.rand(2, 3, 48, 80)
    cls_token, grid = backbone(images)
    assert cls_token.shape == (2, 32) and grid.shape == (2, 32, 3, 5)
    tokens = backbone.model(pixel_values=images).last_hidden_state
    assert tokens.shape[1] == 5 + 15
    # the grid holds the patch tokens in row-major order, none of the register tokens
    torch.testing.assert_close(grid[:, :, 1, 2], tokens[:, 5 + 1 * 5 + 2])
    torch.testing.assert_close(cls_token, tokens[:, 0])


def test_dinov2_from_pretrained_folder_exposes_the_patch_grid(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(**TINY_DINOV2)).save_pretrained(tmp_path / "dinov2")
    backbone = dinov2_backbone(DINOv2BackboneConfig(model=str(tmp_path / "dinov2")))
    assert (backbone.patch_size, backbone.num_prefix_tokens) == (14, 1)
    cls_token, grid = backbone(torch.rand(1, 3, 56, 70))
    assert cls_token.shape == (1, 32) and grid.shape == (1, 32, 4, 5)


def test_timm_vit_by_name_exposes_the_patch_grid():
    pytest.importorskip("timm")
    from defectkit_dinov3.backbone import timm_backbone
    from defectkit_dinov3.config import TimmBackboneConfig

    backbone = timm_backbone(TimmBackboneConfig(model="vit_tiny_patch16_224", pretrained=False))
    assert (backbone.patch_size, backbone.num_prefix_tokens, backbone.hidden_size) == (16, 1, 192)
    cls_token, grid = backbone(torch.rand(1, 3, 32, 48))  # dynamic_img_size: another size than 224
    assert cls_token.shape == (1, 192) and grid.shape == (1, 192, 2, 3)


def test_a_dinov2_folder_given_to_the_dinov3_backend_is_refused(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    from defectkit.errors import DefectkitError

    Dinov2Model(Dinov2Config(**TINY_DINOV2)).save_pretrained(tmp_path / "dinov2")
    with pytest.raises(DefectkitError, match="use the matching model_backend"):
        dinov3_backbone(DINOv3BackboneConfig(model=str(tmp_path / "dinov2")))


def tiny_model(classes: int = 3) -> MultiTaskDefectModel:
    torch.manual_seed(0)
    return MultiTaskDefectModel(dinov3_backbone(DINOv3BackboneConfig(config=TINY_DINOV3)), classes, 8).eval()


def test_model_outputs_and_attention_sums_to_one():
    out = tiny_model()(torch.rand(2, 3, 64, 64))
    assert out.class_logits.shape == (2, 3) and out.defect_logit.shape == (2,)
    assert out.mask_logits.shape == (2, 1, 64, 64) and out.attention.shape == (2, 4, 4)
    torch.testing.assert_close(out.attention.sum((1, 2)), torch.ones(2))


def test_dice_of_identical_masks_is_zero_and_of_disjoint_masks_near_one():
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, 0, 2:5, 2:6] = 1
    assert torch.equal(dice_loss(mask, mask), torch.zeros(2))  # the empty mask predicted empty counts as perfect
    assert float(dice_loss(mask[:1], mask[:1].flip(-1).roll(4, -2))[0]) > 0.9


def test_segmentation_loss_ignores_images_without_masks():
    logits = torch.randn(3, 1, 8, 8, requires_grad=True)
    masks = torch.zeros(3, 1, 8, 8)
    has_mask = torch.tensor([True, False, False])
    loss = segmentation_loss(logits, masks, has_mask)
    loss.backward()
    assert logits.grad[1:].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    assert segmentation_loss(logits, masks, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_down_weights_easy_samples():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 6) * 3, torch.randint(0, 6, (16,))
    weight = torch.rand(6) + 0.5
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(focal_loss(logits, target, 0.0), ce(logits, target))
    torch.testing.assert_close(focal_loss(logits, target, 0.0, weight), ce(logits, target, weight=weight))
    assert float(focal_loss(logits, target, 2.0)) < float(ce(logits, target))


def test_dynamic_weights_switch_at_the_configured_epoch():
    schedule = DynamicWeights(switch_epoch=3)
    assert [schedule.weights(e) for e in range(5)] == [(0.5, 1.0)] * 3 + [(1.0, 0.3)] * 2
    total = schedule.combine(torch.tensor(2.0), torch.tensor(4.0), epoch=3)
    assert float(total) == pytest.approx(1.0 * 2 + 0.3 * 4)


def test_uncertainty_weights_are_learnt():
    weighting = UncertaintyWeights()
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1)
    for _ in range(50):
        # a noisy task (large loss) should end up with the smaller weight
        loss = weighting.combine(torch.tensor(0.1), torch.tensor(3.0), epoch=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    cls_weight, seg_weight = weighting.weights(0)
    assert cls_weight > 1.0 > seg_weight


def test_class_weights_are_inverse_frequency_with_mean_one():
    weights = class_weights([10, 30, 0])
    assert weights[2] == 0 and float(weights[0] / weights[1]) == pytest.approx(3.0)
    assert float(weights[:2].mean()) == pytest.approx(1.0)


def test_augmentation_moves_image_and_mask_identically():
    torch.manual_seed(0)
    # the image carries the mask in its red channel: any geometric change must keep them aligned
    # 8x8-pixel blocks, so that only block edges can differ between bilinear (image) and nearest (mask)
    mask = (torch.rand(1, 4, 4) > 0.6).float().repeat_interleave(8, 1).repeat_interleave(8, 2)
    image = torch.cat([mask, torch.zeros(2, 32, 32)])
    augment = PairedAugment(AugmentConfig(brightness=0, contrast=0, saturation=0, noise_std=0, blur=0))
    changed = 0
    for seed in range(8):
        out_image, out_mask = augment(image, mask, torch.Generator().manual_seed(seed))
        assert set(out_mask.unique().tolist()) <= {0.0, 1.0}  # nearest neighbour: still binary
        agree = ((out_image[0] > 0.5) == (out_mask[0] > 0.5)).float().mean()
        assert float(agree) > 0.9  # a misaligned flip or crop disagrees on about a third of the pixels
        changed += not torch.equal(out_mask, mask)
    assert changed >= 6


def test_photometric_augmentation_leaves_the_mask_alone():
    mask = (torch.rand(1, 16, 16) > 0.5).float()
    augment = PairedAugment(AugmentConfig(hflip=0, vflip=0, rot90=False, crop_scale=(1.0, 1.0), blur=1.0))
    image, out_mask = augment(torch.rand(3, 16, 16), mask, torch.Generator().manual_seed(0))
    assert torch.equal(out_mask, mask) and image.min() >= 0 and image.max() <= 1


def test_onnx_export_matches_torch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from defectkit_dinov3.export import OUTPUT_NAMES, export_onnx

    model = tiny_model()
    path = export_onnx(model, tmp_path / "model.onnx", image_size=64)
    images = torch.rand(3, 3, 64, 64)  # another batch size than the export example: the batch axis is dynamic
    with torch.no_grad():
        expected = model(images)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(OUTPUT_NAMES, {"images": images.numpy()})
    for name, want, have in zip(OUTPUT_NAMES, expected, got, strict=True):
        np.testing.assert_allclose(have, want.numpy(), atol=1e-4, rtol=0, err_msg=name)


class _FixedGrid(torch.nn.Module):
    """A stand-in backbone whose patch grid is given: one patch carries the feature the class head looks for."""

    hidden_size = 8

    def __init__(self, grid: torch.Tensor) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, pixels):
        return torch.zeros(pixels.shape[0], self.hidden_size), self.grid.expand(pixels.shape[0], -1, -1, -1)


def test_class_activation_map_peaks_where_the_class_evidence_is():
    grid = torch.zeros(1, 8, 4, 4)
    grid[0, 3, 2, 1] = 5.0  # feature 3 at patch (row 2, column 1)
    model = MultiTaskDefectModel(_FixedGrid(grid), num_classes=2, decoder_channels=8)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[1, 2 * 8 + 3] = 1.0  # class 1 reads feature 3 of the mean patch token
    cam = model.class_activation_map(torch.rand(1, 3, 64, 64), torch.tensor([1]))
    assert cam.shape == (1, 64, 64) and float(cam.min()) == 0.0 and float(cam.max()) <= 1.0
    row, column = divmod(int(cam[0].argmax()), 64)
    assert (row // 16, column // 16) == (2, 1)
