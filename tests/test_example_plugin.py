"""The example third-party plugin, pip-installed as a user would, shows up and works in a recipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "defectkit-example"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtual environment that sees defectkit's installation and gets the example plugin pip-installed."""
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True, timeout=300)
    python = env / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(EXAMPLE)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return python


def test_installed_example_is_listed_with_its_version(venv):
    result = subprocess.run([str(venv), "-m", "defectkit", "plugins", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    example = next(p for p in json.loads(result.stdout) if p["name"] == "example")
    assert example["distribution"] == "defectkit-example"
    assert example["version"] == "0.2.0"
    assert example["status"] == "ok"
    assert example["components"] == {"detector": ["pixel_zscore"]}
    assert example["hooks"] == ["defectkit_detectors"]


def test_example_component_runs_in_a_recipe(venv, tiny_mvtec, tmp_path):
    recipe = tmp_path / "example.yaml"
    recipe.write_text(
        "version: 1\nname: example\n"
        f"data: {{format: mvtec, root: {tiny_mvtec}, category: carpet}}\n"
        "steps:\n  - detect: {use: pixel_zscore, with: {size: 32}}\n"
    )
    out = tmp_path / "run"
    result = subprocess.run(
        [str(venv), "-m", "defectkit", "run", str(recipe), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "01_detect" / "manifest.json").read_text())
    assert manifest["components"] == [{"name": "pixel_zscore", "kind": "detector", "plugin": "example"}]
    maps = sorted((out / "01_detect" / "anomaly_maps").rglob("*.npy"))
    assert maps and (out / "01_detect" / "scores.csv").read_text().startswith("path,score\n")


def test_example_plugin_own_tests_pass(venv):
    result = subprocess.run(
        [str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True, text=True, timeout=300, cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout[-3000:]
