"""What a run directory offers the web UI: its steps, their options and artifacts, metrics and report. Light.

Reads only what :mod:`defectkit.run` writes (``recipe.resolved.yaml``, each step's ``manifest.json``,
``metrics.json``, ``report.html``); imports no torch, so ``defectkit serve`` fails fast and cheaply on a
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
    """Read ``run_dir``; a folder that is not a defectkit run is a one-line :class:`DefectkitError`."""
    import yaml

    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        raise DefectkitError(f"{run_dir}: no such run directory")
    resolved_path = run_dir / "recipe.resolved.yaml"
    if not resolved_path.is_file():
        raise DefectkitError(
            f"{run_dir}: not a defectkit run directory (no recipe.resolved.yaml); "
            "pass the folder `defectkit run RECIPE --out RUN_DIR` wrote"
        )
    try:
        resolved = yaml.safe_load(resolved_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DefectkitError(f"{resolved_path}: cannot be read as YAML ({exc.__class__.__name__})") from None
    recipe_steps = resolved.get("steps") or []
    steps: list[StepInfo] = []
    for manifest_path in sorted(run_dir.glob("[0-9][0-9]_*/manifest.json")):
        manifest = read_json(manifest_path) or {}
        if manifest.get("status") != "done":
            continue
        index = int(manifest_path.parent.name[:2]) - 1
        kind = manifest.get("kind", "")
        spec = recipe_steps[index].get(kind, {}) if 0 <= index < len(recipe_steps) else {}
        steps.append(
            StepInfo(
                index=index,
                id=manifest.get("id", manifest_path.parent.name[3:]),
                kind=kind,
                path=manifest_path.parent,
                components=tuple(c["name"] for c in manifest.get("components", [])),
                options=dict(spec.get("with") or {}),
                inputs=dict(spec.get("inputs") or {}),
                artifacts=dict(manifest.get("artifacts") or {}),
                metrics=dict(manifest.get("metrics") or {}),
            )
        )
    status = (read_json(run_dir / "run.json") or {}).get("status", "unknown")
    metrics = read_json(run_dir / "metrics.json") or {}
    return RunInfo(run_dir, str(resolved.get("name", run_dir.name)), status, steps, metrics)
