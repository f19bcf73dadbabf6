"""RunDirectory finds an earlier step's artifact as the engine does: a step's inputs: first, else the latest."""

import json

import pytest
import yaml

from defectkit.errors import DefectkitError
from defectkit.rundir import RunDirectory


def _run(tmp_path, generate_spec):
    steps = [
        {"train": {"use": "lora", "id": "a"}},
        {"train": {"use": "lora", "id": "b"}},
        {"generate": {"use": "stable_diffusion", **generate_spec}},
    ]
    tmp_path.mkdir(parents=True)
    (tmp_path / "recipe.resolved.yaml").write_text(yaml.safe_dump({"version": 1, "name": "r", "steps": steps}))
    for dirname, kind, artifacts in (
        ("01_a", "train", {"adapter": "01_a/adapter"}),
        ("02_b", "train", {"adapter": "02_b/adapter"}),
        ("03_generate", "generate", {"generated_images": "03_generate/generated"}),
    ):
        (tmp_path / dirname).mkdir()
        manifest = {"status": "done", "kind": kind, "artifacts": artifacts, "components": [{"name": "x"}]}
        (tmp_path / dirname / "manifest.json").write_text(json.dumps(manifest))
    return RunDirectory(tmp_path)


def test_artifact_before_honours_inputs_then_takes_the_latest(tmp_path):
    run = _run(tmp_path / "with_inputs", {"inputs": {"adapter": "a"}})
    assert run.artifact_before(run.find_step("generate"), "adapter") == run.path / "01_a" / "adapter"
    run = _run(tmp_path / "latest", {})
    assert run.artifact_before(run.find_step("generate"), "adapter") == run.path / "02_b" / "adapter"
    assert run.artifact_before(run.find_step("a"), "adapter") is None  # nothing before the first step
    with pytest.raises(DefectkitError, match=r"has no step 'nope' \(steps: 01_a, 02_b, 03_generate\)"):
        run.find_step("nope")
