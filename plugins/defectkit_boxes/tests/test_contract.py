"""The plugin contract: light hooks, components that build from defaults, strict options."""

import pytest
from pydantic import ValidationError

from defectkit.testing import check_component, check_plugin_light
from defectkit_boxes import hooks


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
    }
    for component in _all():
        check_component(component)
        for name, field in component.load_config_model().model_fields.items():
            assert field.description, f"{component.qualified_name}: {name}"


def test_trainer_defaults_are_offline():
    (trainer,) = hooks.defectkit_trainers()
    config = trainer.build_config()
    # no weights unless asked for by name: a default run never downloads
    assert (config.model, config.weights, config.weights_backbone) == ("fasterrcnn_resnet50_fpn", None, None)


@pytest.mark.parametrize("options", [{"epoch": 3}, {"image_size": 8}, {"small": {"channels": [8, 16]}}, {"lr": 0}])
def test_bad_trainer_options_are_refused(options):
    (trainer,) = hooks.defectkit_trainers()
    with pytest.raises(ValidationError):
        trainer.build_config(options)
