"""Seed 002's extras: the best checkpoint by validation accuracy, gradient accumulation, attention pseudo-masks."""

from __future__ import annotations

import json

import pytest
import torch

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_dinov3.backbone import dinov3_backbone, timm_backbone
from defectkit_dinov3.config import DINOv3BackboneConfig, TimmBackboneConfig
from defectkit_dinov3.tests.test_recipe import recipe, registered  # noqa: F401  (the fixture)
from defectkit_dinov3.tests.tiny import TINY_DINOV3, tiny_train_options
from defectkit_dinov3.train import MultiTaskTrainer


def test_the_best_epoch_is_kept_beside_the_last_and_the_detector_can_use_it(registered, tmp_path, monkeypatch):  # noqa: F811
    import defectkit_dinov3.train as train

    scores = iter([0.5, 0.9, 0.7])  # epoch 2 is the best on validation, epoch 3 the last
    monkeypatch.setattr(train, "accuracy", lambda *args, **kwargs: next(scores))
    options = tiny_train_options(stages=[{"epochs": 3, "lr": 0.003, "freeze_backbone": True}])
    data = recipe([])
    data["data"]["split"] = {"val_fraction": 0.2}
    data["steps"] = [
        {"train": {"use": "dinov3_multitask", "with": options}},
        {"detect": {"id": "last", "use": "dinov3_multitask"}},
        {"detect": {"id": "best", "use": "dinov3_multitask", "with": {"weights": "best"}}},
    ]
    run = run_recipe_dict(data, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())["train"]
    assert metrics["best_epoch"] == 2 and metrics["best_val_accuracy"] == 0.9 and metrics["val_accuracy"] == 0.7
    best = json.loads((run / "01_train" / "checkpoint_best" / "model.json").read_text())
    assert best["epoch"] == 2
    from safetensors.torch import load_file

    last_w = load_file(run / "01_train" / "checkpoint" / "model.safetensors")
    best_w = load_file(run / "01_train" / "checkpoint_best" / "model.safetensors")
    assert any(not last_w[k].equal(best_w[k]) for k in last_w)  # two different epochs' weights
    manifest = json.loads((run / "01_train" / "manifest.json").read_text())
    assert manifest["artifacts"]["best_checkpoint"] == "01_train/checkpoint_best"
    detected = json.loads((run / "metrics.json").read_text())
    assert detected["last"]["weights"] == "last" and detected["best"]["weights"] == "best"
    assert "predicting with " + str(run / "01_train" / "checkpoint_best") in (run / "run.log").read_text()


def test_weights_best_without_a_validation_split_is_one_line(registered, tmp_path):  # noqa: F811
    steps = [
        {"train": {"use": "dinov3_multitask", "with": tiny_train_options()}},
        {"detect": {"use": "dinov3_multitask", "with": {"weights": "best"}}},
    ]
    with pytest.raises(DefectkitError, match="kept no best checkpoint: it had no validation split"):
        run_recipe_dict(recipe(steps), tmp_path / "run")


def test_gradient_accumulation_steps_once_per_group_of_micro_batches(registered, tmp_path, monkeypatch):  # noqa: F811
    steps_taken = []
    original = torch.optim.AdamW.step

    def count(self, *args, **kwargs):
        steps_taken.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", count)
    # 18 training images (3 per class) in micro-batches of 4: 5 micro-batches, in groups of 2: 3 optimizer steps
    options = tiny_train_options(batch_size=4, grad_accumulation=2, stages=[{"epochs": 1, "lr": 0.003}])
    run_recipe_dict(recipe([{"train": {"use": "dinov3_multitask", "with": options}}]), tmp_path / "run")
    assert len(steps_taken) == 3


def test_cls_attention_maps_are_distributions_over_the_patches():
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 64, 64)
    for backbone in (
        dinov3_backbone(DINOv3BackboneConfig(config=TINY_DINOV3)),
        timm_backbone(TimmBackboneConfig(model="vit_tiny_patch16_224", pretrained=False)),
    ):
        backbone.eval()
        attention = backbone.cls_attention(pixels)
        assert attention.shape == (2, 4, 4)
        # the CLS row of a softmax over every token: the patch share is positive and at most 1
        assert bool((attention > 0).all()) and bool((attention.sum(dim=(1, 2)) <= 1 + 1e-5).all())
        tokens = backbone.tokens(pixels)  # the normal forward still works afterwards (attention restored)
        assert tokens.shape[0] == 2


def test_attention_pseudo_masks_train_the_decoder(registered, tmp_path, monkeypatch):  # noqa: F811
    seen = []
    original = MultiTaskTrainer._train

    def spy(self, ctx, path):
        import defectkit_dinov3.model as model

        attention_map = model.MultiTaskDefectModel.attention_map
        monkeypatch.setattr(model.MultiTaskDefectModel, "attention_map", lambda s, x: seen.append(len(x)) or attention_map(s, x))
        return original(self, ctx, path)

    monkeypatch.setattr(MultiTaskTrainer, "_train", spy)
    from defectkit.data.configs import SyntheticConfig
    from defectkit.data.synthetic import synthetic_splits

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    lines = []
    for sample in synthetic_splits(SyntheticConfig(kind="neu", size=32, n_train=2, n_test=1))["train"]:
        name = f"{sample.defect_type}_{len(lines)}.png"
        sample.load_image().save(root / "images" / name)
        lines.append(f"{name},{sample.defect_type}")
    (root / "train_labels.txt").write_text("\n".join(lines) + "\n")
    steps = [{"train": {"use": "dinov3_multitask", "with": tiny_train_options(pseudo_masks="attention")}}]
    run = run_recipe_dict({**recipe(steps), "data": {"format": "folder", "root": str(root), "with": {"val_labels": None}}}, tmp_path / "run")
    assert json.loads((run / "metrics.json").read_text())["train"]["pseudo_masks"] == 12 and sum(seen) == 12
