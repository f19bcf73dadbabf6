"""Discovery survives bad plugins; names are unique; the listing stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from defectkit.components import Component
from defectkit.errors import PluginLoadError, RegistryError
from defectkit.plugins import load_registry

GOOD = """
from defectkit import Component, hookimpl

@hookimpl
def defectkit_trainers():
    return [Component(kind="trainer", name="{name}", factory="{module}:Trainer", summary="test trainer")]

class Trainer:
    def __init__(self, config):
        self.config = config
"""


# fake names: "lora" and "dora" are first-party trainers (defectkit_finetune)
def good_plugin(fake_distribution, dist: str, module: str, name: str = "my_lora"):
    fake_distribution(dist, "1.2.3", {dist: module}, {module: GOOD.format(name=name, module=module)})


def test_installed_first_party_plugins_load_cleanly():
    registry = load_registry()
    assert registry.failed() == [], [p.to_dict() for p in registry.failed()]


def test_a_plugin_that_raises_on_import_is_reported_and_the_rest_keeps_working(fake_distribution):
    good_plugin(fake_distribution, "dk-good-a", "dk_good_a")
    fake_distribution("dk-broken-a", "0.0.1", {"broken": "dk_broken_a"}, {"dk_broken_a": "raise RuntimeError('boom')"})
    registry = load_registry(strict=False)
    broken = registry.plugins["broken"]
    assert broken.status == "error"
    assert broken.distribution == "dk-broken-a" and broken.version == "0.0.1"
    assert "RuntimeError: boom" in broken.errors[0]
    assert broken.hint
    assert registry.get("trainer", "my_lora").plugin == "dk-good-a"


def test_missing_dependency_gets_an_install_hint(fake_distribution):
    fake_distribution("dk-missing", "1.0", {"missing": "dk_missing"}, {"dk_missing": "import not_a_real_module_xyz"})
    info = load_registry(strict=False).plugins["missing"]
    assert "ModuleNotFoundError" in info.errors[0]
    assert "not_a_real_module_xyz" in info.hint


def test_strict_mode_reraises(fake_distribution, monkeypatch):
    fake_distribution("dk-broken-b", "0.1", {"broken_b": "dk_broken_b"}, {"dk_broken_b": "1/0"})
    monkeypatch.setenv("DEFECTKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken_b.*ZeroDivisionError"):
        load_registry()


def test_load_plugins_env_selects_which_load(fake_distribution, monkeypatch):
    good_plugin(fake_distribution, "dk-sel-a", "dk_sel_a", name="alpha")
    good_plugin(fake_distribution, "dk-sel-b", "dk_sel_b", name="beta")
    monkeypatch.setenv("DEFECTKIT_LOAD_PLUGINS", "dk-sel-a")
    assert set(load_registry().plugins) == {"dk-sel-a"}
    monkeypatch.setenv("DEFECTKIT_LOAD_PLUGINS", "")
    assert load_registry().plugins == {}


def test_duplicate_component_names_are_an_error_naming_both_distributions(fake_distribution):
    good_plugin(fake_distribution, "dk-dup-one", "dk_dup_one", name="same")
    good_plugin(fake_distribution, "dk-dup-two", "dk_dup_two", name="same")
    registry = load_registry(strict=False)
    with pytest.raises(RegistryError, match="dk-dup-one 1.2.3 and dk-dup-two 1.2.3"):
        registry.get("trainer", "same")
    assert registry.plugins["dk-dup-one"].status == "error"
    assert "same" not in registry.names("trainer")


def test_misspelt_hook_is_caught_by_check_pending(fake_distribution):
    source = """
from defectkit import hookimpl

@hookimpl
def defectkit_trainer():
    return []
"""
    fake_distribution("dk-typo", "1.0", {"typo": "dk_typo"}, {"dk_typo": source})
    info = load_registry(strict=False).plugins["typo"]
    assert info.status == "error"
    assert "defectkit_trainer" in info.errors[0]
    assert "defectkit_trainers" in info.hint


def test_a_hook_returning_the_wrong_thing_is_reported(fake_distribution):
    source = """
from defectkit import Component, hookimpl

@hookimpl
def defectkit_metrics():
    return [Component(kind="trainer", name="oops", factory="x:y")]

@hookimpl
def defectkit_trainers():
    return [Component(kind="trainer", name="fine", factory="x:y")]
"""
    fake_distribution("dk-wrong", "1.0", {"wrong": "dk_wrong"}, {"dk_wrong": source})
    registry = load_registry(strict=False)
    info = registry.plugins["wrong"]
    assert "defectkit_metrics" in info.errors[0] and "kind 'metric'" in info.errors[0]
    assert "fine" in registry.names("trainer"), "the plugin's other hooks still count"


def test_unknown_name_answers_with_did_you_mean_and_choices(register_plugin):
    class Plugin:
        from defectkit import hookimpl

        @hookimpl
        def defectkit_trainers(self):
            return [
                Component(kind="trainer", name="my_lora", factory="x:y"),
                Component(kind="trainer", name="my_dora", factory="x:y"),
            ]

    register_plugin(Plugin(), "choices")
    from defectkit.plugins import get_registry

    with pytest.raises(RegistryError) as info:
        get_registry().get("trainer", "my_lroa")
    message = str(info.value)
    assert "did you mean 'my_lora'?" in message
    assert "my_dora" in message and "my_lora" in message


def test_component_record_rejects_bad_fields():
    with pytest.raises(ValueError, match="unknown kind"):
        Component(kind="trainers", name="x", factory="a:b")
    with pytest.raises(ValueError, match="import string"):
        Component(kind="trainer", name="x", factory="a.b")


def test_plugins_command_never_imports_torch():
    code = (
        "import sys\n"
        "from defectkit.cli import main\n"
        "try:\n    main(['plugins', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'LIGHT', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("LIGHT"), result.stderr
    listing = json.loads(result.stdout)
    assert all({"name", "version", "entry_point", "hooks", "components", "status", "error"} <= set(p) for p in listing)


def test_help_never_imports_torch():
    code = (
        "import sys\nfrom defectkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'LIGHT', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stderr.strip().endswith("LIGHT"), result.stderr


def first_party_entry_points():
    from importlib import metadata

    return sorted(
        ep.value for ep in metadata.entry_points(group="defectkit") if ep.dist and ep.dist.name == "defectkit"
    )


@pytest.mark.parametrize("module", first_party_entry_points())
def test_first_party_hooks_modules_are_light(module):
    from defectkit.testing import check_plugin_light

    check_plugin_light(module)


@pytest.mark.parametrize("module", first_party_entry_points())
def test_first_party_components_meet_the_contract(module):
    import importlib

    from defectkit.plugins import Registry
    from defectkit.testing import check_component

    registry = Registry(strict=True)
    registry.add_plugin(importlib.import_module(module), module)
    for component in registry.components():
        model = component.load_config_model()
        # required options (a dataset's root) get a placeholder; everything else must have a default
        fields = model.model_fields if model else {}
        required = {name: "placeholder" for name, f in fields.items() if f.is_required() or name == "root"}
        assert set(required) <= {"root"}, f"{component.qualified_name}: options without defaults: {sorted(required)}"
        check_component(component, required)
