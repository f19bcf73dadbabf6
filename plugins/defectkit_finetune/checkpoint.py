"""Checkpoints a user can trust: written atomically every N steps, the last K kept, resumed exactly."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from defectkit import io as dkio

_NAME = re.compile(r"^step-(\d{8})$")


class Checkpoints:
    """``checkpoints/step-00000100/`` folders; a folder that exists is complete (atomic rename)."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def all(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
        return sorted(found)

    def latest(self) -> tuple[int, Path] | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write one checkpoint with ``write(tmp_folder)``, then drop all but the last ``keep``."""
        path = self.folder / f"step-{step:08d}"
        with dkio.atomic_dir(path) as tmp:
            write(tmp)
        for _, old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return path
