"""Settings that cannot work are refused before anything runs, in one line with exit 2 (issue 20, item 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakePlugin, recipe

from defectkit.errors import RecipeError, RunError
from defectkit.recipe import validate_recipe
from defectkit.training import LossGuard

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("steps[0].train.with.lr=.inf", "steps[0].train.with.lr: inf is not a finite number"),
        ("steps[0].train.with.lr=.nan", "steps[0].train.with.lr: "),  # gt=0 already refuses NaN
        ("device=cuda:7", "device: 'cuda:7' but this machine has"),
        ("seed=99999999999999999999999", "seed: seed 99999999999999999999999 is outside 0 … 4294967295"),
        ("seed=-1", "seed: seed -1 is outside 0"),
        ("device=gpu", "device: 'gpu' is not a device"),
    ],
)
def test_impossible_settings_are_refused_by_dry_run(tmp_path, setting, expected):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "run", "recipes/quickstart.yaml", "--set", setting, "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    if setting == "device=cuda:7" and "cuda:7" not in result.stderr:
        pytest.fail(result.stderr)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("defectkit: error: recipes/quickstart.yaml: ") and expected in result.stderr
    assert not out.exists()


def _validate(registry, *overrides: str):
    return validate_recipe(recipe(), registry, "r.yaml", overrides)


@pytest.fixture
def fake_registry(register_plugin, defectkit_registry):
    register_plugin(FakePlugin(), "fake")
    return defectkit_registry


def test_devices_are_checked_against_the_gpus_torch_sees(fake_registry, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(RecipeError, match=r"r.yaml: device: 'cuda' but this machine has no CUDA GPU"):
        _validate(fake_registry, "device=cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(RecipeError, match=r"device: 'cuda:7' but this machine has 2 CUDA GPUs \(cuda:0, cuda:1\)"):
        _validate(fake_registry, "device=cuda:7")
    assert _validate(fake_registry, "device=cuda:1").recipe.device == "cuda:1"


def test_non_finite_numbers_are_found_anywhere_in_the_options(fake_registry):
    with pytest.raises(
        RecipeError, match=r"r.yaml: steps\[2\].evaluate.with.fake_accuracy.scale: -inf is not a finite"
    ):
        _validate(fake_registry, "steps[2].evaluate.with.fake_accuracy.scale=-.inf")
    with pytest.raises(RecipeError, match=r"steps\[2\].evaluate.with.fake_accuracy.scale: inf is not a finite number"):
        # the string 'inf', which pydantic reads as a float, is caught once the options are built
        _validate(fake_registry, "steps[2].evaluate.with.fake_accuracy.scale=inf")


def test_seeds_of_options_are_checked_too(fake_registry):
    with pytest.raises(RecipeError, match=r"data.split.seed: seed 4294967296 is outside"):
        _validate(fake_registry, "data.split.seed=4294967296")
    assert _validate(fake_registry, "seed=4294967295").recipe.seed == 4294967295


def test_loss_guard_tolerates_a_skipped_step_but_not_a_diverged_run():
    guard = LossGuard("step train (fake)", patience=3)
    for step, loss in enumerate([1.0, float("nan"), 0.9, float("nan"), float("nan")], start=1):
        guard.check(loss, step)
    with pytest.raises(
        RunError, match=r"^step train \(fake\): the training loss has been nan for 3 steps in a row \(since step 4\)"
    ):
        guard.check(float("nan"), 6)
