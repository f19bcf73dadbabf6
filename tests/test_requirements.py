"""A component's requirements come from its distribution's extras; missing ones are named with the pip command."""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from defectkit import Component, hookimpl
from defectkit.errors import DefectkitError
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.requirements import extra_requirements, known_extras, unmet

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "torchvision", "diffusers", "transformers", "gradio", "onnxruntime", "bitsandbytes", "openai"}


def _pyproject_extra(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The requirement names of ``defectkit[extra]`` as pyproject.toml writes them, self-references followed."""
    names: set[str] = set()
    for line in extras[extra]:
        requirement = Requirement(line)
        if requirement.name == "defectkit":
            for inner in requirement.extras:
                names |= _pyproject_extra(inner, extras)
        else:
            names.add(requirement.name)
    return names


def test_requirements_are_the_installed_metadata_of_pyproject_extras():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("decodiff", "defectfill", "captions", "serve"):
        got = {Requirement(r).name for r in extra_requirements("defectkit", extra)}
        assert got == _pyproject_extra(extra, extras), extra  # a stale install (pip install -e . again) fails here
    decodiff = get_registry().get("detector", "decodiff")
    assert decodiff.extra == "decodiff" and "torch==2.15.0" in decodiff.requirements()


def test_every_first_party_component_names_a_declared_extra_and_the_core_pulls_no_deep_learning_stack():
    declared = set(known_extras("defectkit"))
    for component in get_registry().components():
        if component.owner == "defectkit" and component.extra is not None:
            assert component.extra in declared, f"{component.qualified_name}: extra {component.extra!r} is not declared"
    core = {Requirement(r).name for r in metadata.requires("defectkit") or [] if Requirement(r).marker is None}
    assert core and not core & HEAVY, f"core dependencies pull {sorted(core & HEAVY)}"
    assert "torch" in {Requirement(r).name for r in extra_requirements("defectkit", "all")}


@pytest.fixture
def heavy_distribution(tmp_path, monkeypatch):
    """An installed distribution ``dk-heavy-plugin`` (real dist-info metadata) whose extra needs a missing package."""
    info = tmp_path / "dk_heavy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dk-heavy-plugin\nVersion: 1.0\nProvides-Extra: gpu\n"
        'Requires-Dist: numpy>=1\nRequires-Dist: dk-surely-not-installed>=2; extra == "gpu"\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield "dk-heavy-plugin"
    sys.path_importer_cache.clear()


class HeavyPlugin:
    @hookimpl
    def defectkit_metrics(self):
        return [
            Component(kind="metric", name="heavy_metric", factory="builtins:dict", summary="needs a GPU stack", extra="gpu"),
            Component(kind="metric", name="light_metric", factory="builtins:dict", summary="numpy only"),
        ]


def test_a_missing_extra_is_listed_and_refused_at_validation_with_the_pip_command(
    heavy_distribution, register_plugin, tmp_path
):
    from click.testing import CliRunner

    from defectkit.cli import cli as main

    register_plugin(HeavyPlugin(), heavy_distribution)
    heavy = get_registry().get("metric", "heavy_metric")
    assert heavy.requirements() == ("dk-surely-not-installed>=2",)
    assert heavy.install_hint() == "pip install 'dk-heavy-plugin[gpu]'"
    assert get_registry().get("metric", "light_metric").install_hint() == ""

    result = CliRunner().invoke(main, ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "needs extra" in result.output and "dk-heavy-plugin[gpu]" in result.output
    listing = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    (entry,) = [p for p in listing if p["name"] == heavy_distribution]
    details = {c["name"]: c for c in entry["component_details"]}
    assert details["heavy_metric"]["missing"] == ["dk-surely-not-installed>=2"]
    assert details["heavy_metric"]["summary"] == "needs a GPU stack" and details["light_metric"]["missing"] == []

    recipe = {
        "version": 1,
        "name": "needs_extra",
        "data": {"format": "synthetic", "category": "carpet", "with": {"size": 32, "n_train": 2, "n_test": 2}},
        "steps": [{"evaluate": {"use": ["light_metric", "heavy_metric"]}}],
    }
    with pytest.raises(DefectkitError) as raised:
        validate_recipe(recipe, get_registry())
    message = str(raised.value)
    assert "steps[0].evaluate.use[1]: metric 'heavy_metric' needs dk-surely-not-installed>=2" in message
    assert message.endswith("run: pip install 'dk-heavy-plugin[gpu]'") and "\n" not in message


def test_unmet_names_a_version_outside_the_specifier():
    assert unmet(["pydantic>=2"]) == []
    (line,) = unmet(["pydantic<1"])
    assert line.startswith("pydantic<1 (installed: 2.")


def test_a_numpy_only_plugin_runs_a_recipe_without_torch(tiny_mvtec, tmp_path):
    """The light core: the example plugin's recipe runs with torch made unimportable (as without the extras)."""
    import os
    import subprocess

    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target", str(target),
         str(ROOT / "examples" / "defectkit-example")],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    recipe = tmp_path / "light.yaml"
    recipe.write_text(
        "version: 1\nname: light\ndevice: cpu\n"
        f"data: {{format: mvtec, root: {tiny_mvtec}, category: carpet}}\n"
        "steps:\n  - detect: {use: pixel_zscore, with: {size: 32}}\n  - report:\n"
    )
    # a finder that answers "not installed" for torch, as a core-only environment does
    blocked = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from defectkit.cli import main\n"
        f"main(['run', {str(recipe)!r}, '--out', {str(tmp_path / 'run')!r}])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)}
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "01_detect" / "scores.csv").is_file()
