"""The example third-party plugin, pip-installed as a user would, shows up and works in a recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "defectkit-example"


@pytest.fixture(scope="module")
def example_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that sees the example plugin pip-installed beside defectkit.

    The plugin is installed with ``pip --target`` into a folder put on PYTHONPATH,
    for the interpreter running the tests. A nested ``venv --system-site-packages``
    would see the *base* interpreter's packages, not an active virtual
    environment's, and so miss defectkit when the suite runs inside a venv.
    """
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target", str(target), str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH", "")) if p)
    return env


def test_installed_example_is_listed_with_its_version(example_env):
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "plugins", "--json"], capture_output=True, text=True, timeout=120, env=example_env
    )
    assert result.returncode == 0, result.stderr
    example = next(p for p in json.loads(result.stdout) if p["name"] == "example")
    assert example["distribution"] == "defectkit-example"
    assert example["version"] == "0.2.0"
    assert example["status"] == "ok"
    assert example["components"] == {"detector": ["pixel_zscore"]}
    assert example["hooks"] == ["defectkit_detectors"]


def test_example_component_runs_in_a_recipe(example_env, tiny_mvtec, tmp_path):
    recipe = tmp_path / "example.yaml"
    recipe.write_text(
        "version: 1\nname: example\n"
        f"data: {{format: mvtec, root: {tiny_mvtec}, category: carpet}}\n"
        "steps:\n  - detect: {use: pixel_zscore, with: {size: 32}}\n"
    )
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "run", str(recipe), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=example_env,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "01_detect" / "manifest.json").read_text())
    assert manifest["components"] == [{"name": "pixel_zscore", "kind": "detector", "plugin": "example"}]
    maps = sorted((out / "01_detect" / "anomaly_maps").rglob("*.npy"))
    assert maps and (out / "01_detect" / "scores.csv").read_text().startswith("path,score\n")

    # new images, as a user scores them after the run: through the plugin's predictor, known to no core code
    detected = tmp_path / "detected"
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", "detect", str(out), str(tiny_mvtec / "carpet" / "test"), "--out", str(detected)],
        capture_output=True,
        text=True,
        timeout=300,
        env=example_env,
    )
    assert result.returncode == 0, result.stderr
    test_images = sorted((tiny_mvtec / "carpet" / "test").rglob("*.png"))
    assert f"of {len(test_images)} images anomalous" in result.stdout and "pixel_zscore step 01_detect" in result.stdout
    lines = (detected / "scores.csv").read_text().splitlines()
    assert lines[0] == "path,score" and len(lines) == len(test_images) + 1  # the detect step's columns
    assert (detected / "verdicts.csv").read_text().startswith("path,file,score,anomalous,threshold\n")
    # the eval-maps layout: <defect type>/<stem>.npy, as below the test folder
    assert sorted(p.relative_to(detected / "anomaly_maps").with_suffix("") for p in (detected / "anomaly_maps").rglob("*.npy")) == sorted(
        p.relative_to(tiny_mvtec / "carpet" / "test").with_suffix("") for p in test_images
    )
    assert len(list((detected / "overlays").glob("*.png"))) == len(test_images)


def test_example_plugin_own_tests_pass(example_env):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLE,
        env=example_env,
    )
    assert result.returncode == 0, result.stdout[-3000:]
