"""The README's promises: exactly two quick-start commands, and CI runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and line.strip()]


def test_quick_start_has_exactly_two_commands():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("defectkit run recipes/quickstart.yaml")
    assert (ROOT / "recipes" / "quickstart.yaml").is_file()
    assert re.search(r"python -m pytest$", commands[1])


def test_ci_runs_both_readme_commands_in_a_fresh_venv():
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()]
    for command in quick_start_commands():
        assert command in lines, f"{command!r} is not a line of .ci/run"
    venv_at = next(i for i, line in enumerate(lines) if "-m venv" in line)
    activate_at = next(i for i, line in enumerate(lines) if "bin/activate" in line)
    first_command = lines.index(quick_start_commands()[0])
    assert venv_at < activate_at < first_command
