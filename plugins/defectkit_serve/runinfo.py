"""What a run directory offers the web UI: its steps, their options and artifacts, metrics and report. Light.

Reads the run through :class:`defectkit.rundir.RunDirectory` (``recipe.resolved.yaml``, each step's
``manifest.json``) plus ``metrics.json`` and ``report.html``; imports no torch, so ``defectkit serve`` fails fast and cheaply on a
folder that is not a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectkit.errors import DefectkitError
from defectkit.io import read_json


@dataclass(frozen=True)
class StepInfo:
    """One finished step of a run."""

    index: int
    id: str
    kind: str
    path: Path
    components: tuple[str, ...]
    options: dict[str, Any]
    inputs: dict[str, str]
    artifacts: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def dirname(self) -> str:
        return self.path.name

    @property
    def component(self) -> str:
        return self.components[0] if self.components else ""


@dataclass
class RunInfo:
    """A run directory as the web UI sees it."""

    run_dir: Path
    name: str
    status: str
    steps: list[StepInfo]
    metrics: dict[str, dict[str, Any]]

    @property
    def report(self) -> Path | None:
        path = self.run_dir / "report.html"
        return path if path.is_file() else None

    def detect_steps(self) -> list[StepInfo]:
        """Finished detect steps, in run order (which of them can be served: :func:`inspectors.find_detectors`)."""
        return [s for s in self.steps if s.kind == "detect" and s.components]

    def generate_steps(self) -> list[StepInfo]:
        return [s for s in self.steps if s.kind == "generate" and s.components]


def read_run(run_dir: str | Path) -> RunInfo:
    """Read ``run_dir`` through the core's :class:`~defectkit.rundir.RunDirectory`; a folder that is not a
    defectkit run is a one-line :class:`DefectkitError`."""
    from defectkit.rundir import RunDirectory

    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        raise DefectkitError(f"{run_dir}: no such run directory")
    if not (run_dir / "recipe.resolved.yaml").is_file():
        raise DefectkitError(
            f"{run_dir}: not a defectkit run directory (no recipe.resolved.yaml); "
            "pass the folder `defectkit run RECIPE --out RUN_DIR` wrote"
        )
    run = RunDirectory(run_dir)
    resolved = run.recipe()
    steps: list[StepInfo] = []
    for record in run.steps():
        if not record.done:
            continue
        spec = run.step_spec(record)
        manifest = record.manifest or {}
        steps.append(
            StepInfo(
                index=record.index,
                id=manifest.get("id", record.id),
                kind=record.kind,
                path=run_dir / record.dirname,
                components=tuple(record.components),
                options=dict(spec.get("with") or {}),
                inputs=dict(spec.get("inputs") or {}),
                artifacts=dict(manifest.get("artifacts") or {}),
                metrics=dict(manifest.get("metrics") or {}),
            )
        )
    status = (read_json(run_dir / "run.json") or {}).get("status", "unknown")
    metrics = read_json(run_dir / "metrics.json") or {}
    return RunInfo(run_dir, str(resolved.get("name", run_dir.name)), status, steps, metrics)
