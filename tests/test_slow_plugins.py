"""A plugin that is slow to import is named, and `defectkit plugins` shows every import time (issue 20, item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_distribution

ROOT = Path(__file__).resolve().parents[1]

SLOW = """
import time

from defectkit import Component, hookimpl

time.sleep(1.3)  # stands for `import torch` at the top of a hooks module


@hookimpl
def defectkit_trainers():
    return [Component(kind="trainer", name="sleepy_lora", factory="dk_sleepy:Trainer")]
"""


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "defectkit", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )


def test_a_slow_plugin_is_named_by_help_and_timed_by_plugins(tmp_path):
    site = make_distribution(tmp_path / "site", "dk-sleepy", "0.3.0", {"sleepy": "dk_sleepy"}, {"dk_sleepy": SLOW})
    result = _cli(site, "--help")
    assert result.returncode == 0, result.stderr
    note = next(line for line in result.stderr.splitlines() if "plugin sleepy" in line)
    assert note.startswith("defectkit: note: plugin sleepy (dk-sleepy) took 1.")
    assert "to import, which slows every command" in note
    listing = json.loads(_cli(site, "plugins", "--json").stdout)
    seconds = {p["name"]: p["import_seconds"] for p in listing}
    assert seconds["sleepy"] >= 1.3
    assert all(isinstance(s, float) for s in seconds.values()), seconds
