"""End to end through recipes on the synthetic MVTec-like data: tiny models, a few steps."""

import csv
import json

import numpy as np
import pytest
from safetensors.torch import load_file

from defectkit.errors import DefectkitError
from defectkit.run import RunInterrupted
from defectkit.testing import run_recipe_dict

TINY_MODEL = {
    "latent": "pixel",
    "pixel_patch": 2,
    "image_size": 40,
    "crop_size": 32,
    "model_size": "XS",
    "model_channels": 16,
    "num_heads": 2,
    "context_dim": 8,
    "channel_mult": [1, 2],
    "attention_resolutions": [2],
}
TRAIN = {**TINY_MODEL, "steps": 4, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2, "log_every": 1}


def recipe(steps: list, category="carpet", n_test=2) -> dict:
    return {
        "version": 1,
        "name": "decodiff",
        "device": "cpu",
        "data": {
            "format": "synthetic",
            "category": category,
            "with": {"kind": "mvtec", "size": 48, "n_train": 6, "n_test": n_test},
        },
        "steps": steps,
    }


def full(train=None, detect=None) -> list:
    return [
        {"train": {"use": "decodiff", "with": {**TRAIN, **(train or {})}}},
        {"detect": {"use": "decodiff", "with": {"batch_size": 8, "image_sigma": 1.0, "overlays": 3, **(detect or {})}}},
        {"evaluate": {"use": ["detection"]}},
    ]


def test_train_detect_evaluate(registered, tmp_path):
    run_dir = run_recipe_dict(recipe(full(train={"dod_gate": True}, detect={"fusion": "gated"})), tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4 and metrics["train"]["train_images"] == 6
    assert set(metrics["evaluate"]) == {
        "image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "pixel_aupro"
    }  # fmt: skip
    checkpoint = run_dir / "01_train" / "checkpoint"
    assert {p.name for p in checkpoint.iterdir()} == {"model.safetensors", "training.pt", "meta.json"}
    assert json.loads((checkpoint / "meta.json").read_text())["step"] == 4

    detect = run_dir / "02_detect"
    maps = sorted(p.relative_to(detect / "anomaly_maps").as_posix() for p in (detect / "anomaly_maps").rglob("*.npy"))
    assert len(maps) == 12 and maps[0] == "color/000.npy" and "good/001.npy" in maps
    anomaly_map = np.load(detect / "anomaly_maps" / "hole" / "001.npy")
    assert anomaly_map.shape == (32, 32) and anomaly_map.dtype == np.float32
    with open(detect / "scores.csv", newline="") as handle:
        rows = {r["path"]: float(r["score"]) for r in csv.DictReader(handle)}
    assert rows["hole/001"] == pytest.approx(float(anomaly_map.max()), abs=1e-5)
    assert len(list((detect / "overlays").glob("*.png"))) == 3
    threshold = json.loads((detect / "threshold.json").read_text())
    assert threshold["method"] == "percentile_99_of_normal" and threshold["source"] == "train_good"


def test_gated_fusion_needs_a_gated_model(registered, tmp_path):
    with pytest.raises(DefectkitError, match="dod_gate"):
        run_recipe_dict(recipe(full(detect={"fusion": "gated"})), tmp_path / "run")


def test_resume_after_interruption_continues_from_the_last_checkpoint(registered, tmp_path, monkeypatch):
    from defectkit_decodiff.trainer import DecoDiffTrainer

    steps = full()[:1]
    straight = run_recipe_dict(recipe(steps), tmp_path / "straight")

    original = DecoDiffTrainer._save
    saved = []

    def save_then_interrupt(self, ctx, path, classes, channels, step, *args):
        original(self, ctx, path, classes, channels, step, *args)
        saved.append(step)
        raise KeyboardInterrupt  # Ctrl-C right after the checkpoint of step 2

    monkeypatch.setattr(DecoDiffTrainer, "_save", save_then_interrupt)
    with pytest.raises(RunInterrupted):
        run_recipe_dict(recipe(steps), tmp_path / "resumed")
    monkeypatch.setattr(DecoDiffTrainer, "_save", original)
    assert saved == [2]

    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    resumed = run_recipe(validate_recipe(recipe(steps), get_registry()), out=tmp_path / "resumed", resume=True)
    assert "resumed from the checkpoint of step 2" in (resumed / "run.log").read_text()
    # the same batches and masks per step: the resumed weights equal an uninterrupted run's
    a = load_file(straight / "01_train" / "checkpoint" / "model.safetensors")
    b = load_file(resumed / "01_train" / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys() and all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)


def test_vae_latent_through_from_pretrained(registered, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=32,
    )
    vae.save_pretrained(tmp_path / "vae")
    model = {**TINY_MODEL, "latent": "vae", "vae_id": str(tmp_path / "vae"), "crop_size": 32}
    del model["pixel_patch"]
    run_dir = run_recipe_dict(recipe(full(train=model, detect={"latent_sigma": 0.5})), tmp_path / "run")
    meta = json.loads((run_dir / "01_train" / "checkpoint" / "meta.json").read_text())
    assert meta["in_channels"] == 4 and meta["model"]["vae_id"] == str(tmp_path / "vae")
    assert np.load(run_dir / "02_detect" / "anomaly_maps" / "cut" / "000.npy").shape == (32, 32)
    assert "pixel_auroc" in json.loads((run_dir / "metrics.json").read_text())["evaluate"]


def test_a_loss_that_stays_non_finite_stops_training_in_one_line(registered, tmp_path):
    from defectkit.errors import RunError

    steps = full(train={"lr": 1e30, "steps": 14, "checkpoint_every": 100})
    with pytest.raises(RunError, match=r"^step train \(decodiff\): the training loss has been (nan|inf) for 10 steps"):
        run_recipe_dict(recipe(steps), tmp_path / "run")
    assert not (tmp_path / "run" / "02_detect").exists(), "the detect step never starts"
