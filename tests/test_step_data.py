"""A step's own ``data:`` block: validated like the recipe's, used by that step only."""

from __future__ import annotations

import json

import pytest
import yaml
from fakes import CALLS, FakePlugin, recipe

from defectkit.errors import RecipeError
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.testing import run_recipe_dict


@pytest.fixture(autouse=True)
def plugin(register_plugin):
    register_plugin(FakePlugin(), "fake")
    CALLS.clear()


def _two_datasets() -> dict:
    """The train step reads 6 samples per split, every other step the recipe's 4."""
    data = recipe()
    data["steps"].insert(
        1, {"evaluate": {"id": "count_own", "use": ["fake_count"], "data": {"format": "fake_data", "with": {"n": 6}}}}
    )
    data["steps"].insert(2, {"evaluate": {"id": "count_recipe", "use": ["fake_count"]}})
    return data


def test_a_step_reads_its_own_data_and_the_others_the_recipes(tmp_path):
    run_dir = run_recipe_dict(_two_datasets(), tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["count_own"] == {"test_samples": 6}
    assert metrics["count_recipe"] == {"test_samples": 4}
    assert metrics["evaluate"] == {"accuracy": 1.0}
    resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    # the step's data block is resolved like the recipe's: every option with its default
    assert resolved["steps"][1]["evaluate"]["data"] == {
        "format": "fake_data",
        "split": {"val_fraction": 0.0, "protocol": "standard"},
        "with": {"n": 6},
    }
    assert "data" not in resolved["steps"][2]["evaluate"]


def test_a_step_with_data_needs_no_recipe_data(tmp_path):
    data = recipe()
    own = data.pop("data")
    for step in data["steps"][:3]:
        next(iter(step.values()))["data"] = own
    run_dir = run_recipe_dict(data, tmp_path / "run")
    assert json.loads((run_dir / "metrics.json").read_text())["evaluate"] == {"accuracy": 1.0}


def test_a_step_without_data_in_a_recipe_without_data_fails_clearly(tmp_path):
    data = recipe()
    data.pop("data")
    data["steps"][0]["train"]["data"] = {"format": "fake_data"}
    with pytest.raises(Exception, match="no data: block"):
        run_recipe_dict(data, tmp_path / "run")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"format": "fake_dta"}, r"x\.yaml: steps\[1\]\.evaluate\.data\.format: .*fake_data"),
        (
            {"format": "fake_data", "with": {"n": 0}},
            r"x\.yaml: steps\[1\]\.evaluate\.data\.with\.n: Input should be greater",
        ),
        ({"format": "fake_data", "with": {"size": 3}}, r"x\.yaml: steps\[1\]\.evaluate\.data\.with\.size: unknown key"),
        (
            {"format": "fake_data", "rooot": "/x"},
            r"x\.yaml: steps\[1\]\.evaluate\.data\.rooot: unknown key; did you mean 'root'",
        ),
        (
            {"format": "fake_data", "root": "/x"},
            r"x\.yaml: steps\[1\]\.evaluate\.data\.root: the 'fake_data' format takes no root",
        ),
    ],
)
def test_a_bad_step_data_block_is_one_line_naming_its_key(data, message):
    bad = recipe()
    bad["steps"].insert(1, {"evaluate": {"use": ["fake_count"], "data": data}})
    with pytest.raises(RecipeError, match=message) as info:
        validate_recipe(bad, get_registry(), source="x.yaml")
    assert "\n" not in str(info.value)


def test_set_reaches_a_step_data_block():
    validated = validate_recipe(_two_datasets(), get_registry(), overrides=["steps[1].evaluate.data.with.n=9"])
    assert validated.steps[1].data_config.n == 9
    assert validated.data_config.n == 4
