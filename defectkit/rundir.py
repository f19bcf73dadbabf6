"""Reading a finished (or unfinished) run directory: its steps, manifests and artifacts.

What ``init_from: RUN_DIR[/STEP]`` and any tool that looks into a run use,
so nobody parses manifests by hand::

    run = RunDirectory("runs/quickstart-20261202-101500")
    path = run.artifact("checkpoint", producers=("decodiff",))   # the latest decodiff checkpoint
    run = RunDirectory.from_reference("runs/a/01_train")        # RUN_DIR/STEP: that step's artifacts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectkit import io as dkio
from defectkit.errors import RunError


@dataclass(frozen=True)
class StepRecord:
    """One step folder of a run: ``01_train`` with its manifest (``None`` while unfinished)."""

    dirname: str
    manifest: dict[str, Any] | None

    @property
    def id(self) -> str:
        return self.dirname.split("_", 1)[1]

    @property
    def done(self) -> bool:
        return bool(self.manifest) and self.manifest.get("status") == "done"

    @property
    def components(self) -> list[str]:
        return [c["name"] for c in (self.manifest or {}).get("components", [])]


class RunDirectory:
    """A run directory as ``defectkit run`` writes it (see :mod:`defectkit.run`)."""

    def __init__(self, path: str | Path, step: str | None = None) -> None:
        self.path = Path(path)
        if not (self.path / "recipe.resolved.yaml").is_file():
            raise RunError(f"{self.path}: not a defectkit run directory (no recipe.resolved.yaml)")
        #: only this step's artifacts are looked at (its folder name ``01_train`` or id ``train``)
        self.step = step
        if step is not None and not any(step in (s.dirname, s.id) for s in self.steps()):
            names = ", ".join(s.dirname for s in self.steps()) or "none"
            raise RunError(f"{self.path}: has no step {step!r} (steps: {names})")

    @classmethod
    def from_reference(cls, reference: str | Path) -> RunDirectory:
        """``RUN_DIR`` or ``RUN_DIR/STEP`` (a step folder such as ``runs/a/01_train``)."""
        path = Path(reference).expanduser()
        if (path / "recipe.resolved.yaml").is_file():
            return cls(path)
        if (path.parent / "recipe.resolved.yaml").is_file():
            return cls(path.parent, step=path.name)
        raise RunError(f"{reference}: neither a defectkit run directory nor a step folder of one")

    def steps(self) -> list[StepRecord]:
        folders = sorted(p for p in self.path.iterdir() if p.is_dir() and p.name[:2].isdigit() and "_" in p.name)
        return [StepRecord(p.name, dkio.read_json(p / "manifest.json")) for p in folders]

    def artifact(self, name: str, producers: tuple[str, ...] = ()) -> Path:
        """The latest finished step's artifact ``name`` (of one of ``producers``, when given); one line if none."""
        candidates = [s for s in self.steps() if s.done and (self.step is None or self.step in (s.dirname, s.id))]
        for record in reversed(candidates):
            rel = record.manifest.get("artifacts", {}).get(name)
            if rel is None:
                continue
            if producers and not set(record.components) & set(producers):
                if self.step is not None:
                    raise RunError(
                        f"{self.path / record.dirname}: its {name!r} was made by {'+'.join(record.components)}, "
                        f"not by {' or '.join(producers)}"
                    )
                continue
            return self.path / rel
        made_by = f" made by {' or '.join(producers)}" if producers else ""
        where = self.path / self.step if self.step else self.path
        raise RunError(f"{where}: no finished step with a {name!r} artifact{made_by}")


def check_run_reference(value: str | None) -> str | None:
    """For a config model's ``field_validator``: ``value`` (``init_from``) names a run or a step folder of one.

    A recipe that names a missing run is then refused by ``defectkit validate``.
    """
    if value is not None:
        try:
            RunDirectory.from_reference(value)
        except RunError as exc:
            raise ValueError(str(exc)) from None
    return value
