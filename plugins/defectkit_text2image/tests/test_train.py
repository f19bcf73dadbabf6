"""The trainer: epochs, checkpoints and resume, EMA, plateau handling, the disk check."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from defectkit.errors import DefectkitError, RecipeError
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import RunInterrupted, run_recipe
from defectkit.testing import run_recipe_dict
from defectkit_text2image.tests.helpers import recipe
from defectkit_text2image.trainer import Text2ImageTrainer


def _weights(run_dir, part: str) -> dict:
    return load_file(run_dir / "01_train" / "model" / part / "diffusion_pytorch_model.safetensors")


def _metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["train"]


def test_a_run_resumed_from_a_checkpoint_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    straight = run_recipe_dict(recipe({"sample_every": 2}), tmp_path / "straight")
    assert sorted(p.name for p in (straight / "01_train" / "samples").iterdir()) == [
        "epoch-00002.png",
        "epoch-00004.png",
    ]

    original = Text2ImageTrainer._plateau

    def interrupt_after_epoch_3(self, ctx, state):
        original(self, ctx, state)
        if state.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Text2ImageTrainer, "_plateau", interrupt_after_epoch_3)
    validated = validate_recipe(recipe({"sample_every": 2}), get_registry())
    out = tmp_path / "resumed"
    with pytest.raises(RunInterrupted):
        run_recipe(validated, out=out)
    assert [p.name for p in (out / "01_train" / "checkpoints").iterdir()] == ["epoch-00002"]
    monkeypatch.setattr(Text2ImageTrainer, "_plateau", original)
    run_recipe(validate_recipe(recipe({"sample_every": 2}), get_registry()), out=out, resume=True)

    assert _metrics(out)["trained_epochs"] == 2  # epochs 3 and 4, after the checkpoint of epoch 2
    for part in ("unet", "unet_raw"):
        expected, got = _weights(straight, part), _weights(out, part)
        assert expected.keys() == got.keys()
        for name, tensor in expected.items():
            assert got[name].equal(tensor), f"{part}: {name} differs after resume"


def test_the_exported_model_holds_the_ema_weights(tmp_path):
    run_dir = run_recipe_dict(recipe(), tmp_path / "run")
    ema, raw = _weights(run_dir, "unet"), _weights(run_dir, "unet_raw")
    assert any(not ema[name].equal(raw[name]) for name in ema)
    info = json.loads((run_dir / "01_train" / "model" / "text2image.json").read_text())
    assert info["ema"] and info["classes"] == ["patches", "scratches"] and info["channels"] == 1


def test_without_ema_only_the_trained_weights_are_written(tmp_path):
    run_dir = run_recipe_dict(recipe({"ema": False, "epochs": 1}), tmp_path / "run")
    model = run_dir / "01_train" / "model"
    assert (model / "unet").is_dir() and not (model / "unet_raw").exists()


def test_a_loss_plateau_stops_training(tmp_path):
    # an improvement must beat the best loss by 10: after the first epoch none does
    run_dir = run_recipe_dict(recipe({"epochs": 6, "plateau_patience": 2, "plateau_min_delta": 10.0}), tmp_path / "run")
    metrics = _metrics(run_dir)
    assert metrics["epochs"] == 3
    assert metrics["stopped_early"] == "loss plateau after epoch 3"
    assert (run_dir / "01_train" / "model" / "unet").is_dir()


def test_a_loss_plateau_halves_the_learning_rate(tmp_path):
    run_dir = run_recipe_dict(
        recipe({"epochs": 4, "plateau_patience": 1, "plateau_min_delta": 10.0, "plateau_action": "halve_lr"}),
        tmp_path / "run",
    )
    metrics = _metrics(run_dir)
    assert metrics["epochs"] == 4 and metrics["stopped_early"] == "no"
    assert metrics["lr_halvings"] == 3
    assert metrics["final_lr"] == pytest.approx(0.002 / 8)
    lrs = [
        json.loads(line)["value"]
        for line in (run_dir / "scalars.jsonl").read_text().splitlines()
        if json.loads(line)["tag"].endswith("/lr")
    ]
    # the rate each epoch trained with; the plateau after epoch 2 halves it for epoch 3, and so on
    assert lrs == pytest.approx([0.002, 0.002, 0.001, 0.0005])


def test_halving_below_min_lr_stops(tmp_path):
    options = {"epochs": 4, "plateau_patience": 1, "plateau_min_delta": 10.0, "plateau_action": "halve_lr"}
    run_dir = run_recipe_dict(recipe({**options, "min_lr": 0.0006}), tmp_path / "run")
    metrics = _metrics(run_dir)
    assert metrics["lr_halvings"] == 1 and metrics["epochs"] == 3
    assert metrics["stopped_early"] == "loss plateau after epoch 3 at the minimum learning rate"


def test_a_full_disk_stops_before_a_checkpoint_is_written(tmp_path):
    with pytest.raises(DefectkitError, match=r"checkpoint needs about .* min_free_disk_mb keeps 1000000000 MB free"):
        run_recipe_dict(recipe({"min_free_disk_mb": 10**9}), tmp_path / "run")
    assert not (tmp_path / "run" / "01_train" / "checkpoints").exists()


def test_gradient_accumulation_takes_fewer_optimizer_steps(tmp_path):
    # 6 images, batch 2: 3 micro-batches an epoch; accumulating 2 makes 2 optimizer steps of them
    run_dir = run_recipe_dict(recipe({"epochs": 1, "grad_accumulation": 2}), tmp_path / "run")
    assert _metrics(run_dir)["optimizer_steps"] == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": {"channels": [8, 16], "attention_levels": [True]}}, "attention_levels has 1 flags for 2 levels"),
        ({"resolution": 17}, r"steps\[0\]\.train\.with: resolution 17 is not divisible by 2"),
        ({"plateau_action": "wait"}, r"steps\[0\]\.train\.with\.plateau_action"),
        ({"epoch": 3}, r"steps\[0\]\.train\.with\.epoch: unknown key; did you mean 'epochs'"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(recipe(options), get_registry())


def test_a_frozen_text_encoder_keeps_its_random_weights(tmp_path):
    run_dir = run_recipe_dict(recipe({"epochs": 1, "text_encoder_lr": 0}), tmp_path / "run")
    model = run_dir / "01_train" / "model"
    trained = load_file(model / "text_encoder" / "model.safetensors")
    raw = load_file(model / "text_encoder_raw" / "model.safetensors")
    assert all(raw[name].equal(tensor) for name, tensor in trained.items())
    unet = _weights(run_dir, "unet")
    assert _metrics(run_dir)["trainable_parameters"] == sum(t.numel() for t in unet.values())
