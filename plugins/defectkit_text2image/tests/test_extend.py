"""Seed 004's "train longer": a finished run continued to more epochs, and init_from another run's weights."""

from __future__ import annotations

import json

import pytest
import yaml
from safetensors.torch import load_file

from defectkit.errors import RecipeError
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import run_recipe
from defectkit.testing import run_recipe_dict
from defectkit_text2image.tests.helpers import recipe


def _unet(run_dir) -> dict:
    return load_file(run_dir / "01_train" / "model" / "unet_raw" / "diffusion_pytorch_model.safetensors")


def test_resume_with_more_epochs_continues_to_exactly_the_longer_runs_weights(tmp_path):
    straight = run_recipe_dict(recipe({"epochs": 6}), tmp_path / "straight")
    out = tmp_path / "run"
    run_recipe_dict(recipe({"epochs": 4}), out)
    # what `defectkit run RECIPE --out RUN --resume --set steps[0].train.with.epochs=6` does
    validated = validate_recipe(recipe({"epochs": 4}), get_registry(), overrides=["steps[0].train.with.epochs=6"])
    run_recipe(validated, out=out, resume=True)
    metrics = json.loads((out / "metrics.json").read_text())["train"]
    assert metrics["epochs"] == 6 and metrics["trained_epochs"] == 2  # epochs 5 and 6, after the last checkpoint
    expected, got = _unet(straight), _unet(out)
    assert all(got[name].equal(tensor) for name, tensor in expected.items())
    assert "schedule has a constant tail" in (out / "run.log").read_text()


def test_init_from_starts_a_new_run_from_a_finished_runs_weights(tmp_path):
    first = run_recipe_dict(recipe({"epochs": 2}), tmp_path / "first")
    second = run_recipe_dict(recipe({"epochs": 1, "init_from": str(first / "01_train")}), tmp_path / "second")
    fresh = run_recipe_dict(recipe({"epochs": 1}), tmp_path / "fresh")
    assert "initialised from the weights of" in (second / "run.log").read_text()
    name = next(iter(_unet(first)))
    assert not _unet(second)[name].equal(_unet(fresh)[name])  # it did not start from the seed's random weights
    resolved = yaml.safe_load((second / "recipe.resolved.yaml").read_text())
    assert resolved["steps"][0]["train"]["with"]["init_from"] == str(first / "01_train")


def test_init_from_a_folder_that_is_no_run_is_refused_at_validation(tmp_path):
    with pytest.raises(RecipeError, match=r"steps\[0\]\.train\.with\.init_from: .*neither a defectkit run directory"):
        validate_recipe(recipe({"init_from": str(tmp_path)}), get_registry())
