"""Recipes: three validation passes, one clean error per mistake, --set overrides."""

from __future__ import annotations

import copy

import pytest
from fakes import FakePlugin, recipe

from defectkit.errors import RecipeError
from defectkit.plugins import get_registry
from defectkit.recipe import apply_override, load_recipe, read_recipe_file, validate_recipe


@pytest.fixture
def registry(register_plugin):
    register_plugin(FakePlugin(), "fake")
    return get_registry()


def error_of(data, registry, overrides=()):
    with pytest.raises(RecipeError) as info:
        validate_recipe(copy.deepcopy(data), registry, source="r.yaml", overrides=overrides)
    message = str(info.value)
    assert "\n" not in message, "one line"
    return message


def test_a_good_recipe_resolves_with_defaults(registry):
    validated = validate_recipe(recipe(), registry, source="r.yaml")
    assert [s.kind for s in validated.steps] == ["train", "detect", "evaluate", "report"]
    assert [s.dirname for s in validated.steps] == ["01_train", "02_detect", "03_evaluate", "04_report"]
    assert validated.resolved["steps"][0]["train"]["with"] == {"rank": 2, "steps": 3}
    assert validated.resolved["steps"][2]["evaluate"]["with"] == {"fake_accuracy": {"scale": 1.0}}
    assert validated.resolved["data"]["with"] == {"n": 4}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nname: x\n  steps: [\n", "r.yaml: invalid YAML: line 3"),
        ("", "r.yaml: the file is empty"),
        ("# only a comment\n", "r.yaml: the file is empty"),
        ("- train: {use: x}\n", "a recipe must be a mapping"),
        ("just a string\n", "got a str"),
    ],
)
def test_unreadable_files_get_one_clean_error(tmp_path, registry, text, expected):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry)
    assert str(info.value).startswith(str(path))
    assert expected.replace("r.yaml", str(path)) in str(info.value) or expected in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        read_recipe_file(tmp_path / "nope.yaml")


def test_structure_errors_name_the_key_path(registry):
    assert error_of({**recipe(), "version": 2}, registry).startswith("r.yaml: version: Input should be 1")
    assert error_of({**recipe(), "seed": "abc"}, registry).startswith("r.yaml: seed: Input should be a valid integer")
    assert error_of({**recipe(), "steps": []}, registry).startswith("r.yaml: steps: List should have at least 1 item")
    missing = recipe()
    del missing["name"]
    assert error_of(missing, registry).startswith("r.yaml: name: Field required")


def test_unknown_keys_are_rejected_at_every_level_with_a_suggestion(registry):
    top = error_of({**recipe(), "stpes": []}, registry)
    assert top.startswith("r.yaml: stpes: unknown key; did you mean 'steps'?")
    data = recipe()
    data["data"]["fromat"] = "x"
    assert "data.fromat: unknown key; did you mean 'format'?" in error_of(data, registry)
    step = recipe()
    step["steps"][0] = {"trian": {"use": "fake_lora"}}
    assert "steps[0].trian: unknown key; did you mean 'train'?" in error_of(step, registry)
    spec = recipe()
    spec["steps"][1]["detect"]["wiht"] = {}
    assert "steps[1].detect.wiht: unknown key; did you mean 'with'?" in error_of(spec, registry)


def test_a_step_has_exactly_one_kind(registry):
    data = recipe()
    data["steps"][0] = {"train": {"use": "fake_lora"}, "detect": {"use": "fake_detector"}}
    assert "steps[0]: a step has exactly one of" in error_of(data, registry)


def test_unknown_component_names_say_did_you_mean(registry):
    data = recipe()
    data["steps"][0]["train"]["use"] = "fake_lroa"
    message = error_of(data, registry)
    assert message.startswith("r.yaml: steps[0].train.use: unknown trainer 'fake_lroa'; did you mean 'fake_lora'?")
    data = recipe()
    data["data"]["format"] = "mvtek"
    assert error_of(data, registry).startswith("r.yaml: data.format: unknown dataset 'mvtek'")
    data = recipe()
    data["steps"][2]["evaluate"]["use"] = ["fake_accuracy", "fake_acuracy"]
    assert "steps[2].evaluate.use[1]: unknown metric 'fake_acuracy'" in error_of(data, registry)


def test_with_blocks_are_checked_against_the_component_config(registry):
    data = recipe()
    data["steps"][0]["train"]["with"] = {"rank": "high"}
    assert error_of(data, registry) == "r.yaml: steps[0].train.with.rank: Input should be a valid integer, unable to parse string as an integer"
    data["steps"][0]["train"]["with"] = {"rnak": 3}
    assert "steps[0].train.with.rnak: unknown key; did you mean 'rank'?" in error_of(data, registry)
    data = recipe()
    data["steps"][2]["evaluate"]["with"] = {"fake_accuracy": {"scale": "big"}}
    assert "steps[2].evaluate.with.fake_accuracy.scale: Input should be a valid number" in error_of(data, registry)
    data["steps"][2]["evaluate"]["with"] = {"fake_count": {}}
    assert "steps[2].evaluate.with.fake_count: not used by this step" in error_of(data, registry)
    data = recipe()
    data["data"]["with"] = {"n": 0}
    assert "data.with.n: Input should be greater than or equal to 1" in error_of(data, registry)


def test_root_given_to_a_format_without_one(registry):
    data = recipe()
    data["data"]["root"] = "/data"
    assert error_of(data, registry) == "r.yaml: data.root: the 'fake_data' format takes no root"


def test_components_without_options_reject_options(registry):
    data = recipe()
    data["steps"][2]["evaluate"] = {"use": ["fake_count"], "with": {"fake_count": {"x": 1}}}
    assert "fake_count takes no options" in error_of(data, registry)


def test_inputs_must_name_an_earlier_step(registry):
    data = recipe()
    data["steps"][1]["detect"]["inputs"] = {"checkpoint": "later"}
    assert "steps[1].detect.inputs.checkpoint: no earlier step has id 'later' (earlier: train)" in error_of(data, registry)


def test_overrides_set_nested_values_lists_and_new_keys(registry):
    data = recipe()
    validated = validate_recipe(
        data,
        registry,
        overrides=["steps[0].train.with.rank=8", "steps.2.evaluate.with.fake_accuracy.scale=0.5", "data.category=carpet", "seed=11"],
    )
    assert validated.resolved["steps"][0]["train"]["with"]["rank"] == 8
    assert validated.resolved["steps"][2]["evaluate"]["with"]["fake_accuracy"]["scale"] == 0.5
    assert validated.data_config.category == "carpet"
    assert validated.recipe.seed == 11


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("noequals", "expected key.path=value"),
        ("steps[9].train.use=x", "steps[9] does not exist (the list has 4 items)"),
        ("name.sub=1", "name is not a mapping"),
        ("steps.x.y=1", "steps is not a mapping"),
    ],
)
def test_bad_overrides(assignment, expected):
    with pytest.raises(RecipeError, match=expected.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        apply_override(recipe(), assignment)


def test_override_errors_are_validated_like_the_file(registry):
    message = error_of(recipe(), registry, overrides=["steps[0].train.with.rank=-1"])
    assert message.startswith("r.yaml: steps[0].train.with.rank: Input should be greater than or equal to 1")


def test_step_ids_are_unique_and_explicit_ids_win(registry):
    data = recipe()
    data["steps"].insert(1, {"train": {"use": "fake_lora", "id": "second"}})
    data["steps"].insert(1, {"train": {"use": "fake_lora"}})
    validated = validate_recipe(data, registry)
    assert [s.id for s in validated.steps][:3] == ["train", "train_2", "second"]
