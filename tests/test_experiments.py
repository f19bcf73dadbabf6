"""A/B experiment groups: one recipe, a run folder per group, identical steps reused, one comparison."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from fakes import CALLS, FakePlugin, recipe

from defectkit.errors import RecipeError
from defectkit.experiments import COMPARISON_HTML, COMPARISON_JSON, best_groups, run_experiments, step_fingerprints
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe


@pytest.fixture(autouse=True)
def plugin(register_plugin):
    register_plugin(FakePlugin(), "fake")
    CALLS.clear()


def with_groups(groups: dict) -> dict:
    return {**recipe(), "experiments": groups}


GROUPS = {
    "baseline": {},
    "gain2": {"steps[1].detect.with.gain": 2.0},  # only the detector differs: the trainer's step is shared
    "rank5": {"steps[0].train.with.rank": 5},  # the first step differs: nothing can be shared
}


def test_each_group_is_the_recipe_with_its_values_set_then_the_command_lines():
    validated = validate_recipe(with_groups(GROUPS), get_registry(), overrides=["steps[0].train.with.steps=2"])
    assert list(validated.groups) == ["baseline", "gain2", "rank5"]
    train = [g.resolved["steps"][0]["train"]["with"] for g in validated.groups.values()]
    assert [t["rank"] for t in train] == [2, 2, 5] and {t["steps"] for t in train} == {2}
    assert validated.groups["gain2"].resolved["steps"][1]["detect"]["with"]["gain"] == 2.0
    assert "experiments" not in validated.groups["gain2"].resolved


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"a b": {}}, r"experiments\.a b: a group name is letters"),
        ({"x": {"steps[9].train.use": "fake_lora"}}, r"steps\[9\] does not exist .*\(in experiments\.x\)"),
        ({"x": {"steps[0].train.with.rank": "many"}}, r"steps\[0\]\.train\.with\.rank: Input should be a valid integer.* \(in experiments\.x\)"),
        ({"x": ["not", "a", "mapping"]}, r"experiments\.x: a mapping of key paths to values"),
    ],
)
def test_a_bad_group_is_one_line_naming_it(groups, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(with_groups(groups), get_registry(), source="r.yaml")


def test_groups_run_into_their_own_folders_and_reuse_identical_steps(tmp_path):
    validated = validate_recipe(with_groups(GROUPS), get_registry())
    out = run_experiments(validated, tmp_path / "ab")
    # the trainer ran for baseline and rank5; gain2 took baseline's identical step
    assert CALLS.count("train resume=False") == 2 and CALLS.count("detect") == 3
    manifest = json.loads((out / "gain2" / "01_train" / "manifest.json").read_text())
    assert manifest["reused_from"] == "../baseline/01_train"
    assert "identical to 01_train" in (out / "gain2" / "run.log").read_text()
    reused = json.loads((out / "gain2" / "metrics.json").read_text())["train"]
    assert reused == json.loads((out / "baseline" / "metrics.json").read_text())["train"]
    assert reused["final_value"] == 600.0
    comparison = json.loads((out / COMPARISON_JSON).read_text())
    assert set(comparison["groups"]) == {"baseline", "gain2", "rank5"}
    assert comparison["groups"]["rank5"]["train"]["final_value"] == 1500.0  # 100 x 3 steps x rank 5
    assert comparison["costs"]["gain2"]["train"]["reused_from"] == "../baseline/01_train"
    assert comparison["costs"]["baseline"]["train"]["peak_memory_mb"] > 0
    assert comparison["costs"]["baseline"]["train"]["memory_kind"] == "peak_rss"
    page = (out / COMPARISON_HTML).read_text()
    assert "rank5" in page and "<img" in page


def test_fingerprints_change_with_a_step_and_every_step_after_it():
    base = step_fingerprints(validate_recipe(recipe(), get_registry()).resolved)
    changed = recipe()
    changed["steps"][1]["detect"]["with"] = {"gain": 3.0}
    other = step_fingerprints(validate_recipe(changed, get_registry()).resolved)
    assert base[0] == other[0] and all(a != b for a, b in zip(base[1:], other[1:], strict=True))


def test_the_best_value_is_marked_by_direction():
    comparison = {
        "groups": {
            "a": {"eval": {"pixel_auroc": 0.9, "fid": 30.0, "threshold": 0.2}},
            "b": {"eval": {"pixel_auroc": 0.8, "fid": 20.0, "threshold": 0.3}},
        }
    }
    best = best_groups(comparison)
    assert best[("eval", "pixel_auroc")] == {"a"} and best[("eval", "fid")] == {"b"}
    assert ("eval", "threshold") not in best  # no direction, no best


def test_compare_command_on_two_finished_runs(tmp_path):
    from defectkit.testing import run_recipe_dict

    a = run_recipe_dict(recipe(), tmp_path / "a")
    changed = recipe()
    changed["steps"][0]["train"]["with"]["rank"] = 4
    b = run_recipe_dict(changed, tmp_path / "b")
    from defectkit.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert ended.value.code == 0
    comparison = json.loads((tmp_path / "cmp" / COMPARISON_JSON).read_text())
    assert comparison["groups"]["a"]["train"]["final_value"] == 600.0
    assert comparison["groups"]["b"]["train"]["final_value"] == 1200.0


def test_the_shipped_ab_recipes_validate(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "validate", "recipes/ab_tiny.yaml"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "experiment groups: baseline, longer_correction, patch_knn" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "run", "recipes/neudet_ab.yaml", "--dry-run", "--set", f"data.root={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for group in ("baseline", "blip2_unipc", "dora_8bit", "sdxl_all"):
        assert f"(experiment group {group})" in result.stdout
    groups = yaml.safe_load(open("recipes/neudet_ab.yaml"))["experiments"]
    assert groups["dora_8bit"] == {"steps[1].train.use": "dora", "steps[1].train.with.optimizer": "adamw_8bit"}
