"""``defectkit detect`` on any run (defectkit.detect) and the contracts of defectkit.protocols."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakePlugin, recipe

from defectkit.cli import main
from defectkit.protocols import STEP_PROTOCOLS, InteractiveDetector, Prediction, SessionCapabilities
from defectkit.testing import run_recipe_dict

EXAMPLE_SRC = Path(__file__).resolve().parents[1] / "examples" / "defectkit-example" / "src"


def cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    return lines[0]


def test_protocols_import_nothing_heavy():
    code = "import sys, defectkit.protocols, defectkit.detect; print([m for m in ('numpy', 'torch', 'PIL') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_every_installed_step_component_class_has_its_step_method(defectkit_registry):
    """The protocols state the methods the engine calls; every installed component class provides its kind's."""
    import inspect

    checked = 0
    for kind, protocol in STEP_PROTOCOLS.items():
        if kind not in ("detector", "generator"):  # the kinds with interactive capabilities; the others import slowly
            continue
        for component in defectkit_registry.components(kind):
            factory = component.load_factory()
            if not inspect.isclass(factory):
                continue
            method = next(iter(m for m in ("detect", "generate") if hasattr(protocol, m)))
            assert callable(getattr(factory, method, None)), f"{component.qualified_name}: no {method}(ctx)"
            checked += 1
    assert checked >= 5
    servable = {
        c.name
        for c in defectkit_registry.components("detector")
        if has_method(c.load_factory(), "open_predictor")
    }
    assert {"decodiff", "patch_knn", "dinov3_multitask"} <= servable
    sessions = {
        c.name
        for c in defectkit_registry.components("generator")
        if has_method(c.load_factory(), "open_session")
    }
    assert {"stable_diffusion", "defectfill"} <= sessions


def has_method(factory, method: str) -> bool:
    return callable(getattr(factory, method, None))


def test_a_run_without_a_predictor_names_its_steps_and_components(register_plugin, tmp_path, capsys):
    register_plugin(FakePlugin(), "fake")
    run_dir = run_recipe_dict(recipe(), tmp_path / "run")
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    line = cli_error(["detect", str(run_dir), str(image)], capsys)
    assert "no finished detect step whose detector can score new images (open_predictor)" in line
    assert "01_train (train: fake_lora)" in line and "02_detect (detect: fake_detector)" in line
    assert "detector fake_detector cannot score new images (it has no open_predictor)" in line


@pytest.fixture
def example_run(register_plugin, defectkit_registry, monkeypatch, tiny_mvtec, tmp_path) -> Path:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    from defectkit_example import hooks

    if "example" not in defectkit_registry.plugins:  # the example is not pip-installed in this environment
        register_plugin(hooks, "example")
    steps = [{"detect": {"use": "pixel_zscore", "with": {"size": 16}}}]
    data = {"format": "mvtec", "root": str(tiny_mvtec), "category": "carpet"}
    return run_recipe_dict({"version": 1, "name": "zs", "data": data, "steps": steps}, tmp_path / "run")


def test_unknown_step_and_unreadable_image_are_one_line(example_run, tiny_mvtec, tmp_path, capsys):
    good = tiny_mvtec / "carpet" / "test" / "good"
    line = cli_error(["detect", str(example_run), str(good), "--step", "train"], capsys)
    assert "has no step 'train' (steps: 01_detect)" in line
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    line = cli_error(["detect", str(example_run), str(broken), "--out", str(tmp_path / "out")], capsys)
    assert "broken.png" in line and "cannot be decoded" in line


def test_a_named_step_and_a_moved_threshold(example_run, tiny_mvtec, tmp_path, capsys):
    good = tiny_mvtec / "carpet" / "test" / "good"
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(example_run), str(good), "--step", "01_detect", "--threshold", "0", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 0
    count = len(list(good.glob("*.png")))
    assert f"{count} of {count} images anomalous (threshold 0.0000, pixel_zscore step 01_detect)" in capsys.readouterr().out


def test_runtime_checks_see_the_capabilities_not_the_name():
    class Plain:
        def detect(self, ctx): ...

    class WithPredictor(Plain):
        def open_predictor(self, run_dir, step_id, device="auto"): ...

    assert not isinstance(Plain(), InteractiveDetector) and isinstance(WithPredictor(), InteractiveDetector)
    record = Prediction(name="a.png", image=None, score=1.0)
    assert record.anomaly_map is None and record.probabilities == {} and record.predicted_class is None
    assert SessionCapabilities() == SessionCapabilities(inpainting=False, control_image=False, negative_prompt=True)
