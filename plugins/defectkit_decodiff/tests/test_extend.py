"""A finished decodiff run trained longer with --resume, and init_from another run's weights."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from safetensors.torch import load_file

from defectkit.testing import run_recipe_dict
from defectkit_decodiff.tests.test_recipe import full, recipe


def test_resume_with_more_steps_continues_from_the_last_checkpoint_and_reruns_detection(tmp_path):
    out = tmp_path / "run"
    run_recipe_dict(recipe(full()), out)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(full())))
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "run", str(path), "--out", str(out), "--resume",
         "--set", "steps[0].train.with.steps=7"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "01_train" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 7
    log = (out / "run.log").read_text()
    assert "resumed from the checkpoint of step 4" in log
    assert "re-planned for 7 steps" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 7 and "image_auroc" in metrics["evaluate"]
    assert list((out / "superseded").glob("*/02_detect/scores.csv"))  # the detection of the 4-step model, kept


def test_init_from_loads_the_other_runs_weights(tmp_path):
    first = run_recipe_dict(recipe(full()), tmp_path / "first")
    second = run_recipe_dict(recipe(full(train={"steps": 1, "init_from": str(first)})), tmp_path / "second")
    fresh = run_recipe_dict(recipe(full(train={"steps": 1})), tmp_path / "fresh")
    weights = [load_file(run / "01_train" / "checkpoint" / "model.safetensors") for run in (first, second, fresh)]
    # same seed, same data, one step: without init_from the two would be equal tensor for tensor (some
    # tensors, such as those behind a zero-initialised projection, do not move in the first steps)
    assert any(not weights[1][name].equal(weights[2][name]) for name in weights[0])
    assert "initialised from the weights of" in (second / "run.log").read_text()
