"""The plugin contract: light hooks, components that build from defaults, strict options, templates."""

import pytest
from pydantic import ValidationError

from defectkit.testing import check_component, check_plugin_light
from defectkit_captions import hooks
from defectkit_captions.templates import tidy

COMPONENTS = {c.name: c for c in hooks.defectkit_caption_providers()}


def test_hooks_module_is_light():
    check_plugin_light("defectkit_captions.hooks", forbidden=("torch", "transformers", "open_clip", "openai"))


def test_every_provider_builds_from_defaults():
    assert sorted(COMPONENTS) == ["blip2", "clip_rerank", "keywords", "llava", "openai"]
    configs = {name: check_component(component) for name, component in COMPONENTS.items()}
    assert all(c.kind == "caption_provider" for c in COMPONENTS.values())
    assert configs["blip2"].model == "Salesforce/blip2-opt-2.7b"
    assert configs["llava"].model == "llava-hf/llava-1.5-7b-hf"
    assert [(m.name, m.pretrained) for m in configs["clip_rerank"].models] == [("ViT-L-14-336", "openai")]
    assert configs["openai"].api_key_env == "OPENAI_API_KEY" and configs["openai"].cache
    assert configs["keywords"].split == "train" and configs["keywords"].template == "{trigger}, {caption}"
    assert set(configs["keywords"].class_keywords) >= {
        "crazing",
        "inclusion",
        "patches",
        "pitted_surface",
        "rolled-in_scale",
        "scratches",
    }


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_every_option_has_a_default_and_description(name):
    for option, field in COMPONENTS[name].load_config_model().model_fields.items():
        assert field.description, f"{name}.{option}"
        assert not field.is_required(), f"{name}.{option}"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("keywords", {"templat": "{caption}"}, "Extra inputs"),
        ("keywords", {"template": "{caption} {trigger"}, "not a valid template"),
        ("keywords", {"template": "{trigger} {label}"}, "unknown placeholder(s) label"),
        ("keywords", {"split": "training"}, "Input should be"),
        ("clip_rerank", {"scoring_templates": ["a photo of {defect_name}"]}, "must contain {keyword}"),
        ("clip_rerank", {"models": []}, "at least 1"),
        ("llava", {"instructions": {"crazing": "describe {colour}"}}, "unknown placeholder(s) colour"),
        ("llava", {"prompt_format": "USER: {instruction} ASSISTANT:"}, "must contain {image}"),
        ("openai", {"api_key": "sk-123"}, "Extra inputs"),  # a key never goes in a recipe
        ("openai", {"api_key_env": "MY KEY"}, "should match pattern"),
        ("openai", {"concurrency": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_options_are_refused(name, options, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        COMPONENTS[name].build_config(options)


def test_tidy_removes_what_empty_placeholders_leave():
    assert tidy("a  photo of <crazing> , , fine cracks,  ") == "a photo of <crazing>, fine cracks"
    assert tidy(", the defect of a  surface .\n") == "the defect of a surface."
