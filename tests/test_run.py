"""The run engine: run directory contents, artifacts between steps, resume, interruption."""

from __future__ import annotations

import json

import pytest
import yaml
from fakes import CALLS, INTERRUPT_AT, FakePlugin, recipe

from defectkit.errors import RunError
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import RunInterrupted, run_recipe
from defectkit.testing import run_recipe_dict


@pytest.fixture(autouse=True)
def plugin(register_plugin):
    register_plugin(FakePlugin(), "fake")
    CALLS.clear()


def test_a_run_directory_holds_everything(tmp_path):
    run_dir = run_recipe_dict(recipe(), tmp_path / "run")
    for name in ("recipe.resolved.yaml", "environment.json", "run.json", "run.log", "metrics.json", "report.html"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in run_dir.iterdir() if p.name[:2].isdigit()) == [
        "01_train",
        "02_detect",
        "03_evaluate",
        "04_report",
    ]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["final_value"] == pytest.approx(100.0 * 2 * 3)
    assert metrics["detect"] == {"checkpoint_steps": 3}
    assert metrics["evaluate"] == {"accuracy": 1.0}
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["seed"] == 3 and environment["torch"]
    # the device is resolved where a step loaded torch; a run that never needed torch keeps the recipe's word
    assert environment["device"] == ("auto" if environment.get("torch_loaded") is False else "cpu")
    assert environment["plugins"]["fake"]["status"] == "ok"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    manifest = json.loads((run_dir / "02_detect" / "manifest.json").read_text())
    assert manifest["artifacts"] == {"anomaly_maps": "02_detect/maps"}
    report = (run_dir / "report.html").read_text()
    assert "accuracy" in report and "train/loss" in report
    assert yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())["steps"][0]["train"]["with"]["rank"] == 2


def test_an_existing_run_directory_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists and is not empty; pass --resume"):
        run_recipe_dict(recipe(), out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_interrupted_run_resumes_without_redoing_finished_steps(tmp_path):
    interrupted = recipe()
    interrupted["steps"][1] = {"detect": {"use": "fake_detector", "with": {"gain": 1.0}}}
    out = tmp_path / "run"
    registry = get_registry()
    validated = validate_recipe(recipe(), registry)
    # first session: the detect step is interrupted by Ctrl-C
    from fakes import Detector

    original = Detector.detect

    def interrupt(self, ctx):
        raise KeyboardInterrupt

    Detector.detect = interrupt
    try:
        with pytest.raises(RunInterrupted, match="--resume"):
            run_recipe(validated, out=out)
    finally:
        Detector.detect = original
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert (out / "01_train" / "manifest.json").exists()
    assert not (out / "02_detect" / "manifest.json").exists()
    assert (out / "report.html").exists(), "even an interrupted run has a report"
    CALLS.clear()
    run_recipe(validate_recipe(recipe(), registry), out=out, resume=True)
    assert CALLS == ["detect"], "train was done; only detect runs again"
    assert json.loads((out / "metrics.json").read_text())["evaluate"] == {"accuracy": 1.0}
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_a_step_resumes_from_its_own_checkpoint(tmp_path):
    out = tmp_path / "run"
    registry = get_registry()
    INTERRUPT_AT["step"] = 2
    with pytest.raises(RunInterrupted):
        run_recipe(validate_recipe(recipe(), registry), out=out)
    assert json.loads((out / "01_train" / "state.json").read_text())["step"] == 2
    CALLS.clear()
    run_recipe(validate_recipe(recipe(), registry), out=out, resume=True)
    assert CALLS[0] == "train resume=True"
    # resumed at step 2 of 3: the result equals an uninterrupted run's
    assert json.loads((out / "metrics.json").read_text())["train"]["final_value"] == pytest.approx(600.0)


def test_resume_refuses_a_changed_recipe(tmp_path):
    out = tmp_path / "run"
    registry = get_registry()
    run_recipe(validate_recipe(recipe(), registry), out=out)
    changed = validate_recipe(recipe(), registry, overrides=["steps[0].train.with.rank=7"])
    with pytest.raises(
        RunError, match=r"the recipe changed since this run started \(steps\[0\].train.with.rank: 2 -> 7\)"
    ):
        run_recipe(changed, out=out, resume=True)


def test_resume_needs_an_existing_run(tmp_path):
    validated = validate_recipe(recipe(), get_registry())
    with pytest.raises(RunError, match="--resume needs --out"):
        run_recipe(validated, resume=True)
    with pytest.raises(RunError, match="not a defectkit run directory"):
        run_recipe(validated, out=tmp_path, resume=True)


def test_a_missing_artifact_names_what_is_available(tmp_path):
    data = recipe()
    del data["steps"][0]
    with pytest.raises(RunError, match="needs artifact 'checkpoint', which no earlier step produced; available: none"):
        run_recipe_dict(data, tmp_path / "run")


def test_inputs_pick_a_specific_producer(tmp_path):
    data = recipe()
    data["steps"].insert(1, {"train": {"use": "fake_lora", "id": "big", "with": {"rank": 5}}})
    data["steps"][2]["detect"]["inputs"] = {"checkpoint": "train"}
    run_dir = run_recipe_dict(data, tmp_path / "run")
    assert json.loads((run_dir / "metrics.json").read_text())["detect"]["checkpoint_steps"] == 3


def test_a_relative_run_directory_works_like_an_absolute_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    validated = validate_recipe(recipe(), get_registry())
    run_dir = run_recipe(validated)  # the default: runs/NAME-TIME, relative to the working directory
    assert run_dir.is_absolute() and run_dir.parent == tmp_path / "runs"
    manifest = json.loads((run_dir / "01_train" / "manifest.json").read_text())
    assert manifest["artifacts"] == {"checkpoint": "01_train/state.json"}
    assert json.loads((run_dir / "metrics.json").read_text())["evaluate"] == {"accuracy": 1.0}
