"""The plugin contract: light hooks, components that build from defaults, strict options."""

import pytest
from pydantic import ValidationError

from defectkit.testing import check_component, check_plugin_light
from defectkit_decodiff import hooks


def test_hooks_module_is_light():
    check_plugin_light("defectkit_decodiff.hooks")
    check_plugin_light("defectkit_decodiff.config")


def test_trainer_contract():
    (component,) = hooks.defectkit_trainers()
    assert (component.kind, component.name) == ("trainer", "decodiff")
    config = check_component(component)
    assert (config.latent, config.vae_id, config.latent_scale) == ("vae", "stabilityai/sd-vae-ft-ema", 0.18215)
    assert (config.image_size, config.crop_size, config.model_size, config.diffusion_steps) == (288, 256, "L", 10)
    assert (config.lr, config.mask_ratio_max) == (1e-4, 0.7)


def test_detector_contract():
    (component,) = hooks.defectkit_detectors()
    assert (component.kind, component.name) == ("detector", "decodiff")
    config = check_component(component)
    assert (config.sample_steps, config.start_t, config.fusion) == (5, 5, "geometric")
    assert (config.image_clip, config.image_sigma, config.latent_clip, config.latent_sigma) == (0.4, 3.0, 0.2, 1.0)


@pytest.mark.parametrize(
    "options",
    [
        {"model_sise": "L"},
        {"model_size": "XXL"},
        {"latent": "pixels"},
        {"crop_size": 300},  # larger than image_size
        {"latent": "vae", "image_size": 100, "crop_size": 100},  # not a multiple of 8 x 4
        {"mask_ratio_max": 1.5},
    ],
)
def test_bad_options_are_refused(options):
    (component,) = hooks.defectkit_trainers()
    with pytest.raises(ValidationError):
        component.build_config(options)


@pytest.mark.parametrize("hook", [hooks.defectkit_trainers, hooks.defectkit_detectors])
def test_every_option_has_a_default_and_description(hook):
    (component,) = hook()
    for name, field in component.load_config_model().model_fields.items():
        assert field.description, name
        assert not field.is_required(), name
