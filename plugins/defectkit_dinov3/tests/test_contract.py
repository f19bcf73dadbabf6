"""The plugin contract: light hooks, components that build from defaults, strict options."""

import pytest
from pydantic import ValidationError

from defectkit.testing import check_component, check_plugin_light
from defectkit_dinov3 import hooks
from defectkit_dinov3.config import DINOV3_SMALL


def test_hooks_module_is_light():
    check_plugin_light("defectkit_dinov3.hooks")


def test_backends_default_to_the_released_small_models():
    backends = {c.name: c for c in hooks.defectkit_model_backends()}
    assert set(backends) == {"dinov3", "dinov2", "timm"}
    assert check_component(backends["dinov3"]).model == DINOV3_SMALL == "facebook/dinov3-vits16-pretrain-lvd1689m"
    assert check_component(backends["dinov2"]).model == "facebook/dinov2-small"
    assert check_component(backends["timm"]).model == "vit_small_patch16_224"
    assert check_component(backends["dinov3"], {"config": {"hidden_size": 64}}).model is None


def test_trainer_and_detector_contract():
    (trainer,) = hooks.defectkit_trainers()
    (detector,) = hooks.defectkit_detectors()
    assert (trainer.name, detector.name) == ("dinov3_multitask", "dinov3_multitask")
    config = check_component(trainer)
    assert [s.freeze_backbone for s in config.stages] == [True, False]
    assert (config.classification_weights, config.segmentation_weights) == ((0.5, 1.0), (1.0, 0.3))
    assert check_component(detector).mask_threshold == 0.5


@pytest.mark.parametrize(
    "options",
    [
        {"stagse": []},
        {"stages": []},
        {"weighting": "gradnorm"},
        {"classification_loss": "hinge"},
        {"backbone": {"use": "dinov3", "wiht": {}}},
    ],
)
def test_bad_trainer_options_are_refused(options):
    (trainer,) = hooks.defectkit_trainers()
    with pytest.raises(ValidationError):
        trainer.build_config(options)


def test_a_backbone_takes_weights_or_a_config_not_both():
    backends = {c.name: c for c in hooks.defectkit_model_backends()}
    with pytest.raises(ValidationError, match="either model"):
        backends["dinov3"].build_config({"model": "x", "config": {}})


def test_every_option_has_a_default_and_description():
    for component in (*hooks.defectkit_trainers(), *hooks.defectkit_detectors()):
        for name, field in component.load_config_model().model_fields.items():
            assert field.description, name
            assert not field.is_required(), name
