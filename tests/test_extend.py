"""Train longer without starting over: --resume with grown steps/epochs or appended steps."""

from __future__ import annotations

import json

import pytest
import yaml
from fakes import CALLS, INTERRUPT_AT, FakePlugin, recipe

from defectkit.errors import RunError
from defectkit.extend import plan_extension
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import RunInterrupted, first_difference, run_recipe
from defectkit.testing import run_recipe_dict


@pytest.fixture(autouse=True)
def plugin(register_plugin):
    register_plugin(FakePlugin(), "fake")
    CALLS.clear()
    INTERRUPT_AT["step"] = None


def resolved(data):
    return validate_recipe(data, get_registry()).resolved


def with_steps(n: int, **extra) -> dict:
    data = recipe(**extra)
    data["steps"][0]["train"]["with"]["steps"] = n
    return data


def test_a_grown_length_and_appended_steps_are_an_extension():
    longer = with_steps(5)
    longer["steps"].append({"evaluate": {"id": "count", "use": ["fake_count"]}})
    plan = plan_extension(resolved(with_steps(3)), resolved(longer), first_difference)
    assert plan.lengths == {0: {"steps": (3, 5)}} and plan.appended == 1 and plan.first_rerun == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["steps"][0]["train"]["with"].update(steps=2), r"steps\[0\]\.train\.with\.steps: 3 -> 2: .*not shorter"),
        (lambda d: d["steps"][0]["train"]["with"].update(rank=7), r"steps\[0\]\.train\.with\.rank: 2 -> 7"),
        (lambda d: d.update(seed=4), r"seed: 3 -> 4"),
        (lambda d: d["steps"].pop(), r"steps can be appended, never removed"),
    ],
)
def test_any_other_change_is_refused(change, message):
    changed = with_steps(3)
    change(changed)
    with pytest.raises(ValueError, match=message):
        plan_extension(resolved(with_steps(3)), resolved(changed), first_difference)


def test_resume_trains_longer_and_reruns_the_steps_after_it(tmp_path):
    straight = run_recipe_dict(with_steps(5), tmp_path / "straight")
    out = tmp_path / "run"
    run_recipe_dict(with_steps(3), out)
    old_detect = (out / "02_detect" / "maps").stat().st_mtime_ns
    CALLS.clear()
    run_recipe(validate_recipe(with_steps(5), get_registry()), out=out, resume=True)
    assert CALLS == ["train resume=True", "detect"]  # continued, then the detector read the new checkpoint
    metrics = json.loads((out / "metrics.json").read_text())
    expected = json.loads((straight / "metrics.json").read_text())
    assert metrics["train"]["final_value"] == expected["train"]["final_value"]
    assert metrics["detect"]["checkpoint_steps"] == 5
    superseded = list((out / "superseded").glob("*/02_detect/maps"))
    assert len(superseded) == 1 and superseded[0].stat().st_mtime_ns == old_detect  # kept, not deleted
    assert yaml.safe_load((out / "recipe.resolved.yaml").read_text())["steps"][0]["train"]["with"]["steps"] == 5
    log = (out / "run.log").read_text()
    assert "extending the run: steps[0].train: steps 3 -> 5: continues from its last checkpoint" in log
    # a second resume with the same recipe has nothing left to do
    CALLS.clear()
    run_recipe(validate_recipe(with_steps(5), get_registry()), out=out, resume=True)
    assert CALLS == []


def test_appended_steps_run_alone(tmp_path):
    out = tmp_path / "run"
    run_recipe_dict(with_steps(3), out)
    CALLS.clear()
    longer = with_steps(3)
    longer["steps"].append({"evaluate": {"id": "count", "use": ["fake_count"]}})
    run_recipe(validate_recipe(longer, get_registry()), out=out, resume=True)
    assert CALLS == []  # neither the trainer nor the detector ran again
    assert json.loads((out / "metrics.json").read_text())["count"] == {"test_samples": 4}


def test_an_extension_interrupted_midway_resumes_to_the_same_result(tmp_path):
    straight = run_recipe_dict(with_steps(6), tmp_path / "straight")
    out = tmp_path / "run"
    run_recipe_dict(with_steps(3), out)
    INTERRUPT_AT["step"] = 4
    with pytest.raises(RunInterrupted):
        run_recipe(validate_recipe(with_steps(6), get_registry()), out=out, resume=True)
    run_recipe(validate_recipe(with_steps(6), get_registry()), out=out, resume=True)
    got = json.loads((out / "metrics.json").read_text())["train"]["final_value"]
    assert got == json.loads((straight / "metrics.json").read_text())["train"]["final_value"]


def test_a_changed_option_is_still_refused_with_what_may_change(tmp_path):
    out = tmp_path / "run"
    run_recipe_dict(with_steps(3), out)
    changed = with_steps(3)
    changed["steps"][0]["train"]["with"]["rank"] = 9
    with pytest.raises(RunError, match=r"rank: 2 -> 9\); .*steps or epochs may grow, and steps may be appended"):
        run_recipe(validate_recipe(changed, get_registry()), out=out, resume=True)
