"""The plugin contract: light hooks, components that build from defaults, strict options."""

import pytest
from pydantic import ValidationError

from defectkit.testing import check_component, check_plugin_light
from defectkit_boxes import hooks


def _trainer(name: str):
    return next(c for c in hooks.defectkit_trainers() if c.name == name)


def _all():
    return hooks.defectkit_trainers() + hooks.defectkit_detectors() + hooks.defectkit_metrics()


def test_hooks_module_is_light():
    check_plugin_light("defectkit_boxes.hooks")


def test_components_build_from_defaults_and_document_every_option():
    names = {(c.kind, c.name) for c in _all()}
    assert names == {
        ("trainer", "torchvision_boxes"),
        ("detector", "torchvision_boxes"),
        ("metric", "box_map"),
        ("metric", "detection_accuracy"),
        ("metric", "classification_accuracy_score"),
        ("trainer", "yolo"),
        ("trainer", "box_compare"),
        ("detector", "yolo"),
    }
    for component in _all():
        check_component(component)  # resolves yolo's factory too: ultralytics is imported only when it runs
        for name, field in component.load_config_model().model_fields.items():
            assert field.description, f"{component.qualified_name}: {name}"


def test_trainer_defaults_are_offline():
    config = _trainer("torchvision_boxes").build_config()
    # no weights unless asked for by name: a default run never downloads
    assert (config.model, config.weights, config.weights_backbone) == ("fasterrcnn_resnet50_fpn", None, None)


@pytest.mark.parametrize("options", [{"epoch": 3}, {"image_size": 8}, {"small": {"channels": [8, 16]}}, {"lr": 0}])
def test_bad_trainer_options_are_refused(options):
    with pytest.raises(ValidationError):
        _trainer("torchvision_boxes").build_config(options)


def test_the_yolo_summary_states_the_licence_and_the_extra():
    for component in hooks.defectkit_trainers() + hooks.defectkit_detectors():
        if component.name == "yolo":
            assert "AGPL-3.0" in component.summary and "defectkit[yolo]" in component.summary
