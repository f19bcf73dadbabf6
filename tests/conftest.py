"""Shared helpers for the core tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


def make_distribution(
    root: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write an installed-looking distribution (dist-info + modules) under ``root``.

    Adding ``root`` to ``sys.path`` (or PYTHONPATH) makes ``importlib.metadata``
    see its ``defectkit`` entry points, exactly as for a pip-installed plugin.
    """
    root.mkdir(parents=True, exist_ok=True)
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[defectkit]\n{lines}\n")
    for module, source in modules.items():
        path = root / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fake_distribution(name, version, entry_points, modules)``: install a plugin for this test."""
    counter = iter(range(1000))

    def make(name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        root = make_distribution(tmp_path / f"site{next(counter)}", name, version, entry_points, modules)
        monkeypatch.syspath_prepend(str(root))
        return root

    return make
