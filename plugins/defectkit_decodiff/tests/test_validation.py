"""Choosing the checkpoint on held-out good images with synthetic defects pasted in (validation_images)."""

import json

import pytest
from safetensors.torch import load_file

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_decodiff.tests.test_recipe import full, recipe


def _scalars(run_dir, tag):
    lines = [json.loads(line) for line in (run_dir / "scalars.jsonl").read_text().splitlines()]
    return {entry["step"]: entry["value"] for entry in lines if entry["tag"] == tag}


def test_the_best_validated_checkpoint_is_kept_and_detected_with(registered, tmp_path, monkeypatch):
    import defectkit.stats

    real = defectkit.stats.auroc
    figures = iter([0.9, 0.8, 0.6, 0.5])  # step 2 (image, pixel), then step 4: step 2 is the best
    monkeypatch.setattr(defectkit.stats, "auroc", lambda labels, scores: (real(labels, scores), next(figures))[1])
    run_dir = run_recipe_dict(recipe(full(train={"validation_images": 2})), tmp_path / "run")
    train = json.loads((run_dir / "metrics.json").read_text())["train"]
    assert train["train_images"] == 4 and train["validation_images"] == 2
    assert (train["best_step"], train["best_val_image_auroc"], train["best_val_pixel_auroc"]) == (2, 0.9, 0.8)
    assert _scalars(run_dir, "train/decodiff/val_image_auroc") == {2: 0.9, 4: 0.6}
    step = run_dir / "01_train"
    assert json.loads((step / "best_checkpoint" / "meta.json").read_text())["step"] == 2
    assert json.loads((step / "checkpoint" / "meta.json").read_text())["step"] == 4  # resume continues from the last
    best = load_file(step / "best_checkpoint" / "model.safetensors")
    last = load_file(step / "checkpoint" / "model.safetensors")
    assert any(not (best[k] == last[k]).all() for k in best)
    threshold = json.loads((run_dir / "02_detect" / "threshold.json").read_text())
    assert threshold["checkpoint"] == "01_train/best_checkpoint"
    assert "detecting with best_checkpoint (step 2)" in (run_dir / "run.log").read_text()


def test_validation_scores_the_real_maps_and_last_can_be_asked_for(registered, tmp_path):
    run_dir = run_recipe_dict(recipe(full(train={"validation_images": 2}, detect={"checkpoint": "last"})), tmp_path / "r")
    values = _scalars(run_dir, "train/decodiff/val_pixel_auroc")
    assert sorted(values) == [2, 4] and all(0.0 <= v <= 1.0 for v in values.values())
    assert json.loads((run_dir / "02_detect" / "threshold.json").read_text())["checkpoint"] == "01_train/checkpoint"


def test_too_many_validation_images_is_one_line(registered, tmp_path):
    with pytest.raises(DefectkitError, match=r"validation_images: 5 leaves 1 of the 6 good training images"):
        run_recipe_dict(recipe(full(train={"validation_images": 5})), tmp_path / "run")


def test_without_a_val_split_the_threshold_is_chosen_on_the_synthetic_validation(registered, tmp_path):
    import numpy as np
    import torch

    from defectkit.stats import choose_threshold
    from defectkit_decodiff.config import DecoDiffDetectConfig
    from defectkit_decodiff.detector import AnomalyScorer
    from defectkit_decodiff.model import load_checkpoint, to_model_range
    from defectkit_decodiff.trainer import load_validation_set

    run_dir = run_recipe_dict(recipe(full(train={"validation_images": 2})), tmp_path / "run")
    saved = json.loads((run_dir / "02_detect" / "threshold.json").read_text())
    assert (saved["source"], saved["method"]) == ("synthetic_val", "f1_adaptive")
    validation = load_validation_set(run_dir / "01_train" / "validation_set.npz")
    assert validation["images"].shape[0] == 4 and validation["labels"].tolist() == [0, 0, 1, 1]
    assert not validation["masks"][:2].any() and validation["masks"][2:].any(axis=(1, 2)).all()
    # the held-out images scored again with the detect step's own options and the checkpoint it used
    device = torch.device("cpu")
    scorer = AnomalyScorer(load_checkpoint(run_dir / saved["checkpoint"], device), DecoDiffDetectConfig(**saved["detect_options"]), device)
    scores = scorer.score(to_model_range(validation["images"], device), torch.as_tensor(validation["classes"]))[1]
    expected = choose_threshold(validation["labels"].tolist(), scores.tolist(), 99.0)
    assert saved["threshold"] == pytest.approx(expected["threshold"], rel=1e-5)
    assert np.isclose(saved["f1"], expected["f1"])


def test_validation_grid_chooses_detect_options_on_the_synthetic_validation(registered, tmp_path):
    grid = {"start_t": [1, 3], "image_sigma": [1.0, 4.0]}
    run_dir = run_recipe_dict(
        recipe(full(train={"validation_images": 2}, detect={"validation_grid": grid})), tmp_path / "run"
    )
    saved = json.loads((run_dir / "02_detect" / "threshold.json").read_text())
    choice = saved["validation_choice"]
    assert choice["grid"] == grid
    # the options it chose are the ones the test split, the threshold and `defectkit detect` use
    assert {k: saved["detect_options"][k] for k in grid} == choice["chosen"]
    assert saved["detect_options"]["validation_grid"] == {}
    log = (run_dir / "run.log").read_text()
    figures = {}
    for line in log.splitlines():
        if "synthetic validation with" in line:
            setting, rest = line.split("synthetic validation with ")[1].split(": image AUROC ")
            image, pixel = (float(x) for x in rest.split(", pixel AUROC "))
            figures[setting] = (image + pixel) / 2
    assert len(figures) == 4  # every combination was scored, and the best was kept
    assert figures[str(choice["chosen"])] == pytest.approx(max(figures.values()), abs=1e-3)
    assert json.loads((run_dir / "metrics.json").read_text())["detect"]["val_image_auroc"] == choice["image_auroc"]


def test_validation_grid_without_validation_images_is_one_line(registered, tmp_path):
    with pytest.raises(DefectkitError, match=r"validation_grid needs the synthetic validation .* set validation_images"):
        run_recipe_dict(recipe(full(detect={"validation_grid": {"start_t": [1, 2]}})), tmp_path / "run")


def test_a_validation_grid_value_the_detector_refuses_is_one_line(registered, tmp_path):
    with pytest.raises(DefectkitError, match=r"validation_grid: \{'start_t': 0\} is not a valid detect setting \(start_t"):
        run_recipe_dict(
            recipe(full(train={"validation_images": 2}, detect={"validation_grid": {"start_t": [0]}})), tmp_path / "r"
        )
