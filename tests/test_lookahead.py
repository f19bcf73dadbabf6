"""Validation looks ahead: data on disk, and artifacts between steps by their producer."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fakes import FakePlugin, recipe

from defectkit import Component, Consumes, hookimpl
from defectkit.errors import RecipeError, RunError
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe


class DeclaringPlugin:
    """The fake trainer and detector again, this time saying what they produce and accept."""

    @hookimpl
    def defectkit_trainers(self):
        return [
            Component(kind="trainer", name=name, factory="fakes:Trainer", config="fakes:TrainConfig", produces=("checkpoint",))
            for name in ("maker_a", "maker_b")
        ]

    @hookimpl
    def defectkit_detectors(self):
        return [
            Component(
                kind="detector",
                name="picky_detector",
                factory="fakes:Detector",
                config="fakes:DetectConfig",
                produces=("anomaly_maps",),
                consumes=(Consumes("checkpoint", producers=("maker_a",)),),
            )
        ]


@pytest.fixture(autouse=True)
def plugins(register_plugin):
    register_plugin(FakePlugin(), "fake")
    register_plugin(DeclaringPlugin(), "declaring")


def steps(*items):
    return recipe(steps=list(items))


def test_a_consumer_without_its_producer_is_refused_naming_who_makes_it():
    with pytest.raises(RecipeError) as err:
        validate_recipe(steps({"detect": {"use": "picky_detector"}}), get_registry(), source="r.yaml")
    assert str(err.value) == (
        "r.yaml: steps[0].detect: picky_detector needs artifact 'checkpoint', which no earlier step produces; "
        "add a step with maker_a before it"
    )


def test_an_artifact_from_a_producer_the_consumer_does_not_accept_names_both_steps():
    data = steps({"train": {"use": "maker_b"}}, {"detect": {"use": "picky_detector"}})
    with pytest.raises(RecipeError, match=r"steps\[1\]\.detect: picky_detector reads 'checkpoint' made by maker_a, "
                       r"but the one it would get comes from steps\[0\]\.train \(maker_b\)"):
        validate_recipe(data, get_registry(), source="r.yaml")


def test_the_latest_producer_counts_and_inputs_can_pick_another():
    ok = steps({"train": {"use": "maker_b"}}, {"train": {"id": "a", "use": "maker_a"}}, {"detect": {"use": "picky_detector"}})
    validate_recipe(ok, get_registry())
    picked = steps(
        {"train": {"id": "a", "use": "maker_a"}},
        {"train": {"id": "b", "use": "maker_b"}},
        {"detect": {"use": "picky_detector", "inputs": {"checkpoint": "a"}}},
    )
    validate_recipe(picked, get_registry())
    picked["steps"][2]["detect"]["inputs"] = {"checkpoint": "b"}
    with pytest.raises(RecipeError, match=r"comes from steps\[1\]\.train \(maker_b\)"):
        validate_recipe(picked, get_registry())


def test_a_step_that_does_not_declare_its_artifacts_leaves_the_check_to_the_run():
    # fake_lora declares nothing: it may well produce a checkpoint, so validation must not refuse
    validate_recipe(steps({"train": {"use": "fake_lora"}}, {"detect": {"use": "picky_detector"}}), get_registry())


def test_the_run_refuses_an_artifact_from_a_producer_the_consumer_does_not_accept(tmp_path):
    # validation cannot see through an undeclared step, so the consuming step checks the producer itself
    from defectkit.run import run_recipe

    registry = get_registry()
    validated = validate_recipe(steps({"train": {"use": "maker_a"}}, {"detect": {"use": "picky_detector"}}), registry)
    validated.steps[0].components[0] = registry.get("trainer", "maker_b")  # the checkpoint now comes from maker_b
    with pytest.raises(RunError, match="picky_detector reads 'checkpoint' made by maker_a, but step train made it with maker_b"):
        run_recipe(validated, out=tmp_path / "refused")
    validated = validate_recipe(steps({"train": {"use": "maker_a"}}, {"detect": {"use": "picky_detector"}}), registry)
    assert (run_recipe(validated, out=tmp_path / "accepted") / "02_detect" / "manifest.json").is_file()


def test_first_party_decodiff_detect_alone_is_refused():
    data = {
        "version": 1,
        "name": "x",
        "data": {"format": "synthetic", "with": {"category": "carpet"}},
        "steps": [{"detect": {"use": "decodiff"}}],
    }
    with pytest.raises(RecipeError, match=r"steps\[0\]\.detect: decodiff needs artifact 'checkpoint', which no earlier "
                       r"step produces; add a step with decodiff before it"):
        validate_recipe(data, get_registry())
    data["steps"].insert(0, {"train": {"use": "patch_knn"}})
    with pytest.raises(RecipeError, match=r"comes from steps\[0\]\.train \(patch_knn\)"):
        validate_recipe(data, get_registry())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"format": "mvtec", "root": "/no/such/folder", "category": "carpet"},
         "data.root: /no/such/folder does not exist; point it at the dataset with --set data.root=DIR"),
        ({"format": "folder", "root": "/no/such/folder"}, "data.root: /no/such/folder does not exist"),
    ],
)
def test_a_data_root_that_does_not_exist_is_refused(data, expected):
    with pytest.raises(RecipeError, match="^r.yaml: " + expected.replace(".", r"\.")):
        validate_recipe({**recipe(), "data": data, "steps": [{"report": None}]}, get_registry(), source="r.yaml")


def test_a_category_the_dataset_lacks_is_refused_with_the_choices(tmp_path):
    for name in ("carpet", "bottle"):
        (tmp_path / name / "test").mkdir(parents=True)
    data = {"format": "mvtec", "root": str(tmp_path), "category": "carpett"}
    with pytest.raises(RecipeError, match=r"data\.category: .*carpett: no such category; did you mean 'carpet'\? available: bottle, carpet"):
        validate_recipe({**recipe(), "data": data, "steps": [{"report": None}]}, get_registry())
    step_data = {**recipe(), "steps": [{"detect": {"use": "patch_knn", "data": data}}]}
    with pytest.raises(RecipeError, match=r"steps\[0\]\.detect\.data\.category: "):
        validate_recipe(step_data, get_registry())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("data: {format: mvtec, root: /no/such/folder, category: carpet}\nsteps: [{report: }]\n", "data.root: /no/such/folder does not exist"),
        ("data: {format: synthetic}\nsteps: [{detect: {use: decodiff}}]\n", "decodiff needs artifact 'checkpoint'"),
    ],
)
def test_validate_command_refuses_in_one_line(tmp_path, body, expected):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: x\n" + body)
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
