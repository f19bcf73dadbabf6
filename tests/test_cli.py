"""The CLI as a user meets it: one-line errors, exit status 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakePlugin, recipe

from defectkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> tuple[int, str, str]:
    """Run the real console script in a subprocess, as a user does."""
    result = subprocess.run(
        [sys.executable, "-m", "defectkit", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("version: 1\nname: [x\n", "invalid YAML"),
        ("", "the file is empty"),
        ("- a\n- b\n", "a recipe must be a mapping"),
        ("version: 1\nname: x\nseed: lots\nsteps: [{report: }]\n", "seed: Input should be a valid integer"),
        ("version: 1\nname: x\nsteps: [{report: }]\nextra: 1\n", "extra: unknown key"),
        ("version: 1\nname: x\nsteps: [{train: {use: nothing_like_this}}]\n", "steps[0].train.use: unknown trainer"),
    ],
)
def test_broken_recipes_get_one_line_exit_2_and_nothing_written(tmp_path, content, expected):
    recipe_file = tmp_path / "broken.yaml"
    recipe_file.write_text(content)
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", str(recipe_file), "--out", str(out))
    assert code == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"defectkit: error: {recipe_file}: ") and expected in stderr
    assert not out.exists()


def test_validate_dry_run_and_print_config(tmp_path, register_plugin, capsys):
    register_plugin(FakePlugin(), "fake")
    import yaml

    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(recipe()))
    for args, expected in [
        (
            ["validate", str(path)],
            "valid (4 steps: train fake_lora, detect fake_detector, evaluate fake_accuracy, report)",
        ),
        (["run", str(path), "--dry-run"], "02_detect: detect with fake_detector (fake)"),
        (["run", str(path), "--print-config", "--set", "steps[0].train.with.rank=9"], "rank: 9"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 0
        assert expected in capsys.readouterr().out
    assert not Path("runs").exists() or not any(Path("runs").glob("fake-*")), "dry runs write nothing"


def test_run_from_the_cli_and_resume(tmp_path, register_plugin, capsys):
    register_plugin(FakePlugin(), "fake")
    import yaml

    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(recipe()))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--out", str(out)])
    assert exit_info.value.code == 0
    assert json.loads((out / "metrics.json").read_text())["evaluate"]["accuracy"] == 1.0
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--out", str(out)])
    assert exit_info.value.code == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--out", str(out), "--resume"])
    assert exit_info.value.code == 0


def test_bad_set_option_is_one_line(tmp_path):
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("version: 1\nname: x\nsteps: [{report: }]\n")
    code, _, stderr = cli("validate", str(recipe_file), "--set", "steps[3].report.with.title=x")
    assert code == 2 and "steps[3] does not exist (the list has 1 items)" in stderr and "Traceback" not in stderr


def test_recipes_lists_ready_recipes_with_descriptions():
    code, stdout, _ = cli("recipes")
    assert code == 0
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        assert path.stem in stdout


def test_plugins_table_and_json(tmp_path):
    code, stdout, _ = cli("plugins")
    assert code == 0 and "defectkit plugins" in stdout
    code, stdout, _ = cli("plugins", "--json")
    names = {p["name"] for p in json.loads(stdout)}
    assert code == 0 and names, "first-party plugins are listed"
    code, stdout, _ = cli("plugins", "--verbose")
    # each component's summary: where a licence or an optional extra is stated (ultralytics' AGPL-3.0)
    assert code == 0 and "components" in stdout and "AGPL-3.0" in stdout
