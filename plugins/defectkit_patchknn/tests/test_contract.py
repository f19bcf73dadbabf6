"""The plugin contract: light hooks, components that build from defaults, strict options."""

import pytest
from pydantic import ValidationError

from defectkit.testing import check_component, check_plugin_light
from defectkit_patchknn import hooks


def test_hooks_module_is_light():
    check_plugin_light("defectkit_patchknn.hooks")


def test_trainer_contract():
    (component,) = hooks.defectkit_trainers()
    assert (component.kind, component.name) == ("trainer", "patch_knn")
    config = check_component(component)
    assert (config.backbone, config.weights, config.layers, config.image_size) == (
        "resnet18",
        "IMAGENET1K_V1",
        ["layer2", "layer3"],
        128,
    )


def test_detector_contract():
    (component,) = hooks.defectkit_detectors()
    assert (component.kind, component.name) == ("detector", "patch_knn")
    config = check_component(component, {"weights": None, "image_score": "patchcore"})
    assert config.weights is None and config.blur_sigma == 4.0


@pytest.mark.parametrize(
    "options",
    [{"coreset_ratoi": 0.1}, {"backbone": "vit_b_16"}, {"coreset_ratio": 0.0}, {"layers": ["layer5"]}],
)
def test_bad_options_are_refused(options):
    (component,) = hooks.defectkit_trainers()
    with pytest.raises(ValidationError):
        component.build_config(options)


def test_every_option_has_a_default_and_description():
    (component,) = hooks.defectkit_detectors()
    for name, field in component.load_config_model().model_fields.items():
        assert field.description, name
        assert not field.is_required(), name


def test_overlays_show_every_defect_type_and_normal_images():
    from defectkit.overlays import pick_overlays

    types = ["good"] * 8 + ["scratch", "blob", "foreign"] * 4
    labels = [int(t != "good") for t in types]
    chosen = pick_overlays(types, labels, 12)
    assert len(chosen) == len(set(chosen)) == 12
    assert sorted(types[i] for i in chosen).count("good") == 4
    assert {types[i] for i in chosen} == {"good", "scratch", "blob", "foreign"}
    assert pick_overlays(["good", "blob"], [0, 1], 12) == [1, 0]
