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

    @property
    def kind(self) -> str:
        """The step kind (``train``, ``detect`` ...) its manifest records; ``""`` while unfinished."""
        return str((self.manifest or {}).get("kind", ""))

    @property
    def index(self) -> int:
        """Its position in the recipe's steps (0-based), from the folder's number."""
        return int(self.dirname.split("_", 1)[0]) - 1

    def describe(self) -> str:
        """``02_detect (detect: patch_knn)``, for messages that list a run's steps."""
        kind = self.kind or "unfinished"
        return f"{self.dirname} ({kind}: {'+'.join(self.components) or 'built-in'})"


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

    def recipe(self) -> dict[str, Any]:
        """The resolved recipe the run was made from (``recipe.resolved.yaml``)."""
        import yaml

        path = self.path / "recipe.resolved.yaml"
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise RunError(f"{path}: cannot be read as YAML ({exc.__class__.__name__})") from None

    def find_step(self, step: str) -> StepRecord:
        """The step named by its folder (``02_detect``) or id (``detect``); one line naming the steps if none."""
        records = self.steps()
        for record in records:
            if step in (record.dirname, record.id):
                return record
        names = ", ".join(r.dirname for r in records) or "none"
        raise RunError(f"{self.path}: has no step {step!r} (steps: {names})")

    def step_spec(self, record: StepRecord) -> dict[str, Any]:
        """The step's block in the resolved recipe (``{"use": ..., "with": {...}, "inputs": {...}}``)."""
        steps = self.recipe().get("steps") or []
        if not 0 <= record.index < len(steps):
            return {}
        entry = steps[record.index] or {}
        return dict(entry.get(record.kind) or next(iter(entry.values()), {}) or {})

    def step_options(self, record: StepRecord) -> dict[str, Any]:
        """The step's resolved ``with:`` options, as its component was built with them."""
        return dict(self.step_spec(record).get("with") or {})

    def artifact_before(self, record: StepRecord, name: str) -> Path | None:
        """Artifact ``name`` as step ``record`` read it: from its ``inputs:`` step, else the latest earlier step."""
        wanted = self.step_spec(record).get("inputs", {}).get(name)
        for earlier in reversed([s for s in self.steps() if s.done and s.index < record.index]):
            if wanted is not None and wanted not in (earlier.id, earlier.dirname):
                continue
            rel = earlier.manifest.get("artifacts", {}).get(name)
            if rel is not None:
                return self.path / rel
        return None

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
