"""The plugin's contract: light hooks, components that build with their defaults."""

from defectkit.testing import check_component, check_plugin_light
from defectkit_text2image import hooks


def test_hooks_import_nothing_heavy():
    check_plugin_light("defectkit_text2image.hooks")


def test_components_meet_the_contract():
    components = hooks.defectkit_trainers() + hooks.defectkit_generators()
    assert [(c.kind, c.name) for c in components] == [
        ("trainer", "text2image_scratch"),
        ("generator", "text2image_scratch"),
    ]
    for component in components:
        check_component(component)
