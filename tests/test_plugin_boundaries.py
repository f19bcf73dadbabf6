"""Plugins talk only to the core and to each other's declared public modules; checked on the source.

Every ``.py`` under ``plugins/`` is parsed with :mod:`ast` (nothing is imported) and fails the test,
naming ``file:line`` and the import, when

* a plugin imports another first-party plugin other than through ``defectkit_X.api``, ``defectkit_X.tiny``
  or ``defectkit_X.hooks`` (tests included: a test is a user of the other plugin too);
* a production module (not under a ``tests/`` folder) imports a ``testing`` module or any plugin's
  ``tests`` package;
* ``defectkit_serve`` imports a detector or generator plugin at all (one whose hooks module implements
  ``defectkit_detectors`` or ``defectkit_generators``): serve finds them through the registry.

``ALLOWANCE`` holds today's exceptions, each with the reason; an entry that no longer matches an import
fails too, so the list only shrinks. CONTRIBUTING.md ("Building on another plugin") states the rule.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
FIRST_PARTY = sorted(p.name for p in PLUGINS.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
#: the modules of a plugin that other plugins may import
PUBLIC_MODULES = ("api", "tiny", "hooks")
SERVE = "defectkit_serve"

#: (file relative to the repository, imported module) -> why it is allowed for now
ALLOWANCE: dict[tuple[str, str], str] = {
    # serve's tests count and slow down a real predictor's calls (the Inspect path must not re-run the model)
    ("plugins/defectkit_serve/tests/test_load.py", "defectkit_patchknn.predictor"): "test spy on a real predictor",
    ("plugins/defectkit_serve/tests/test_serve.py", "defectkit_patchknn.predictor"): "test spy on a real predictor",
    # serve's tests train a tiny decodiff and dinov3 run with those plugins' test recipes and options
    ("plugins/defectkit_serve/tests/test_serve.py", "defectkit_decodiff.tests.test_recipe"): "test fixtures",
    ("plugins/defectkit_serve/tests/test_serve.py", "defectkit_dinov3.tests.test_recipe"): "test fixtures",
    ("plugins/defectkit_serve/tests/test_serve.py", "defectkit_dinov3.tests.tiny"): "test fixtures",
}


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository
    line: int
    module: str  # the full module name imported (``pkg.sub`` for ``from pkg import sub``)
    text: str  # the statement as written

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def owner(path: Path) -> str:
    """The plugin package a file under plugins/ belongs to."""
    return path.relative_to(PLUGINS).parts[0]


def is_test_file(path: Path) -> bool:
    return "tests" in path.relative_to(PLUGINS).parts[:-1]


def imports_of(path: Path) -> list[Import]:
    """Every absolute import in ``path``, and every ``import_module("...")``/``__import__("...")`` of a literal."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    rel = str(path.relative_to(ROOT))
    found: list[Import] = []
    lines = source.splitlines()
    for node in ast.walk(tree):
        text = lines[node.lineno - 1].strip() if isinstance(node, ast.stmt | ast.expr) else ""
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, alias.name, text) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if "." in node.module:
                found.append(Import(rel, node.lineno, node.module, text))
            else:  # ``from pkg import sub`` names modules (or the package's attributes): each is checked
                found += [Import(rel, node.lineno, f"{node.module}.{alias.name}", text) for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append(Import(rel, node.lineno, node.args[0].value, text))
    return found


def provides_detectors_or_generators(plugin: str) -> bool:
    """Whether the plugin's hooks module implements ``defectkit_detectors`` or ``defectkit_generators``."""
    hooks = PLUGINS / plugin / "hooks.py"
    if not hooks.is_file():
        return False
    tree = ast.parse(hooks.read_text(encoding="utf-8"))
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    return bool(names & {"defectkit_detectors", "defectkit_generators"})


DETECTOR_OR_GENERATOR = {p for p in FIRST_PARTY if provides_detectors_or_generators(p)}


def problem(path: Path, imp: Import) -> str | None:
    """Why ``imp`` in ``path`` breaks a boundary, or None."""
    parts = imp.module.split(".")
    here = owner(path)
    if not is_test_file(path):
        if "testing" in parts:
            return "a production module imports a testing module (move what it needs into a public module)"
        if parts[0] in FIRST_PARTY and "tests" in parts[1:]:
            return "a production module imports a plugin's tests package"
    other = parts[0]
    if other not in FIRST_PARTY or other == here:
        return None
    if here == SERVE and other in DETECTOR_OR_GENERATOR:
        return f"serve imports the {other} plugin; find detectors and generators through the registry"
    if len(parts) == 1 or parts[1] not in PUBLIC_MODULES:
        return f"{here} imports {imp.module}; use {other}.api (or .tiny, .hooks)"
    return None


def violations() -> list[tuple[Import, str]]:
    found = []
    for path in sorted(PLUGINS.rglob("*.py")):
        for imp in imports_of(path):
            why = problem(path, imp)
            if why is not None:
                found.append((imp, why))
    return found


def test_plugins_import_each_other_only_through_public_modules():
    found = violations()
    unexpected = [f"{imp}  <- {why}" for imp, why in found if (imp.file, imp.module) not in ALLOWANCE]
    assert not unexpected, "imports across plugin boundaries:\n" + "\n".join(unexpected)


def test_every_allowance_is_still_needed():
    used = {(imp.file, imp.module) for imp, _ in violations()}
    stale = [f"{file}: {module}" for (file, module) in ALLOWANCE if (file, module) not in used]
    assert not stale, "ALLOWANCE entries no import needs any more (remove them):\n" + "\n".join(stale)


def test_the_check_sees_a_bad_import(tmp_path, monkeypatch):
    # the rules themselves, on a file that breaks each: a check that finds nothing proves nothing
    plugin = tmp_path / "plugins" / "defectkit_defectfill"
    (plugin / "tests").mkdir(parents=True)
    (plugin / "work.py").write_text(
        "from defectkit_finetune.trainer import TiLoraTrainer\n"
        "from defectkit_finetune import optim\n"
        "from defectkit_finetune.api import TiLoraTrainer as Fine\n"
        "import defectkit_diffusion.tiny\n"
        "import defectkit_diffusion\n"
        "from defectkit.testing import run_recipe_dict\n"
        "from defectkit_metrics.tests import helpers\n"
        "import importlib\n"
        "importlib.import_module('defectkit_metrics.extractors')\n",
        encoding="utf-8",
    )
    (plugin / "tests" / "test_x.py").write_text("from defectkit.testing import run_recipe_dict\n", encoding="utf-8")
    serve = tmp_path / "plugins" / SERVE
    serve.mkdir()
    (serve / "app.py").write_text("from defectkit_patchknn.api import something\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PLUGINS", tmp_path / "plugins")
    found = {(str(imp).split(": ", 1)[0], imp.module) for imp, _ in violations()}
    work = "plugins/defectkit_defectfill/work.py"
    assert found == {
        (f"{work}:1", "defectkit_finetune.trainer"),
        (f"{work}:2", "defectkit_finetune.optim"),
        (f"{work}:5", "defectkit_diffusion"),
        (f"{work}:6", "defectkit.testing"),
        (f"{work}:7", "defectkit_metrics.tests"),
        (f"{work}:9", "defectkit_metrics.extractors"),
        ("plugins/defectkit_serve/app.py:1", "defectkit_patchknn.api"),
    }


def test_serve_counts_the_detector_and_generator_plugins():
    # the serve rule depends on reading the hooks modules right
    assert {"defectkit_decodiff", "defectkit_patchknn", "defectkit_dinov3", "defectkit_diffusion"} <= DETECTOR_OR_GENERATOR
    assert "defectkit_metrics" not in DETECTOR_OR_GENERATOR and SERVE not in DETECTOR_OR_GENERATOR


# -- the api modules themselves ---------------------------------------------------------------------

API_MODULES = sorted(f"{p}.api" for p in FIRST_PARTY if (PLUGINS / p / "api.py").is_file())
PUBLIC_LIGHT = API_MODULES + sorted(f"{p}.tiny" for p in FIRST_PARTY if (PLUGINS / p / "tiny.py").is_file())


def test_plugins_that_others_build_on_declare_an_api():
    used = {
        imp.module.split(".")[0]
        for path in PLUGINS.rglob("*.py")
        for imp in imports_of(path)
        if imp.module.split(".")[0] in FIRST_PARTY
        and imp.module.split(".")[0] != owner(path)
        and imp.module.split(".")[1:2] == ["api"]
    }
    assert used <= {m.removesuffix(".api") for m in API_MODULES}
    assert {"defectkit_finetune.api", "defectkit_diffusion.api", "defectkit_metrics.api"} <= set(API_MODULES)


@pytest.mark.parametrize("name", API_MODULES)
def test_api_module_exports_documented_names(name):
    module = importlib.import_module(name)
    assert module.__doc__ and "stable public API" in module.__doc__
    exported = module.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for attr in exported:
        value = getattr(module, attr)  # resolves (a lazy re-export names a real object)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name}.{attr} has no docstring"
        assert f"`{attr}`" in contributing, f"list {name}.{attr} in CONTRIBUTING.md (Building on another plugin)"
    with pytest.raises(AttributeError):
        module.not_exported_name  # noqa: B018 (the lookup is the test)


def test_public_modules_import_no_torch():
    # other plugins' light modules (a config.py) import from these: they must stay light themselves
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in PUBLIC_LIGHT)
    code += "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\nprint(heavy)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"importing {PUBLIC_LIGHT} imported {out.stdout.strip()}"
