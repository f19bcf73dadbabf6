"""Fixtures and contract checks for plugin authors (a pytest plugin).

Installed with defectkit and active in every pytest session through the
``pytest11`` entry point; nothing here imports torch at import time.

Fixtures:
    ``defectkit_registry``  a fresh registry of the installed plugins, used by
                            every defectkit call during the test;
    ``register_plugin``     ``register_plugin(obj, name)`` adds a plugin object (a
                            module or a class instance with hook implementations)
                            for one test and removes it afterwards;
    ``tiny_mvtec``          a small synthetic MVTec-layout category on disk.

Checks (plain functions, call them from your tests):
    :func:`check_component`, :func:`check_plugin_light`, :func:`run_recipe_dict`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from defectkit import plugins as _plugins
from defectkit.components import Component


@pytest.fixture
def defectkit_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[_plugins.Registry]:
    """A fresh registry of the installed plugins, made the process-wide one for this test."""
    registry = _plugins.load_registry()
    monkeypatch.setattr(_plugins, "_registry", registry)
    yield registry


@pytest.fixture
def register_plugin(defectkit_registry: _plugins.Registry) -> Iterator[Callable[..., _plugins.PluginInfo]]:
    """``register_plugin(obj, name="my-plugin")`` registers ``obj`` until the test ends."""
    added: list[str] = []

    def register(obj: object, name: str | None = None) -> _plugins.PluginInfo:
        name = name or getattr(obj, "__name__", type(obj).__name__)
        info = defectkit_registry.add_plugin(obj, name)
        added.append(info.name)
        return info

    yield register
    for name in added:
        defectkit_registry.remove_plugin(name)


@pytest.fixture
def tiny_mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic MVTec-layout dataset root (one texture category, 64 px)."""
    from defectkit.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("tiny_mvtec")
    write_dataset("mvtec", root, size=64, n_train=8, n_test=6, seed=0, categories=["carpet"])
    return root


def check_component(component: Component, options: dict[str, Any] | None = None) -> Any:
    """The contract every component must meet; returns the built config.

    - its config model (if any) builds from ``options`` (default: no options,
      so every option needs a default or the component must say so in its docs);
    - its factory import string resolves to a callable;
    - each of its requirements (its ``extra``'s, from the installed metadata,
      and its ``requires``) is a valid requirement string, satisfied by the
      installed version where that package is installed.
    """
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    for requirement in component.requirements():
        try:
            parsed = Requirement(requirement)
        except InvalidRequirement as exc:
            raise AssertionError(f"{component.qualified_name}: requires {requirement!r} is not a requirement ({exc})") from None
        try:
            installed = metadata.version(parsed.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency the user installs when they need this component
        assert parsed.specifier.contains(installed, prereleases=True), (
            f"{component.qualified_name}: requires {requirement}, but {parsed.name} {installed} is installed"
        )
    config = component.build_config(options)
    factory = component.load_factory()
    assert callable(factory), f"{component.qualified_name}: factory {component.factory} is not callable"
    return config


def check_plugin_light(module: str, forbidden: tuple[str, ...] = ("torch", "transformers", "diffusers")) -> None:
    """Importing ``module`` (a plugin's hooks module) and calling its hooks imports none of ``forbidden``."""
    code = (
        "import sys, importlib\n"
        f"m = importlib.import_module({module!r})\n"
        "from defectkit.plugins import Registry\n"
        f"r = Registry(strict=True); r.add_plugin(m, {module!r})\n"
        f"bad = [name for name in {forbidden!r} if name in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    heavy = result.stdout.strip()
    assert not heavy, f"importing {module} pulls in {heavy}: move heavy imports behind the factory"


def run_recipe_dict(recipe: dict[str, Any], out: Path, overrides: tuple[str, ...] = ()) -> Path:
    """Validate and run a recipe given as a dict into ``out``; returns the run directory."""
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    validated = validate_recipe(recipe, get_registry(), source="<test recipe>", overrides=overrides)
    return run_recipe(validated, out=out)
