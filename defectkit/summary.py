"""The figures of a run at a glance: what ``defectkit run`` prints at its end and ``defectkit show`` prints later.

Read only from the run directory (run.json, the step manifests, metrics.json),
so a finished, failed or interrupted run can be shown from any machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectkit import io as dkio
from defectkit.errors import RunError
from defectkit.rundir import RunDirectory

#: metric names worth a line of their own in the summary; the rest stay in metrics.json and the report
HEADLINE = re.compile(
    r"(^|[/_])(auroc|ap|aupro|pro|f1|f1max|iou|dice|accuracy|precision|recall|map\d*|fid|kid|is|lpips|ssim|"
    r"edge_ssim|lbp_intersection|clip|loss|gain|ci95|images_per_second|seconds_per_image)($|[/_])"
)
#: at most this many figures per step; a note says how many more metrics.json has
MAX_PER_STEP = 10


@dataclass
class StepSummary:
    """One step's line in the summary: where it ran, how long, and its headline figures."""

    dirname: str
    kind: str
    components: str
    status: str
    seconds: float | None
    figures: list[tuple[str, str]] = field(default_factory=list)
    more: int = 0


def format_value(value: Any) -> str:
    """A figure for a narrow table cell: 4 decimals for fractions, fewer digits for large values."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        # fractions (AUROC, LPIPS, losses) to 4 decimals; times and rates to 4 significant digits
        if abs(value) <= 1:
            return f"{value:.4f}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{format_value(value[0])}, {format_value(value[1])}]"
    return str(value)


def _is_figure(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def headline_figures(metrics: dict[str, Any]) -> tuple[list[tuple[str, str]], int]:
    """The figures worth showing, and how many were left out.

    A per-class breakdown (``lbp_intersection/patches``) is left out when its
    total (``lbp_intersection``) is there; gains and intervals stay.
    """
    figures = {k: v for k, v in metrics.items() if _is_figure(v)}
    chosen = [
        k
        for k in figures
        if HEADLINE.search(k) and not ("/" in k and not k.startswith("gain/") and k.split("/", 1)[0] in figures)
    ]
    if not chosen:  # a component whose names we cannot guess: its first figures
        chosen = list(figures)[:4]
    shown = chosen[:MAX_PER_STEP]
    return [(k, format_value(figures[k])) for k in shown], len(metrics) - len(shown)


def summarize_run(run_dir: str | Path) -> tuple[dict[str, Any], list[StepSummary]]:
    """run.json and one :class:`StepSummary` per step folder, in order."""
    run_dir = Path(run_dir)
    status = dkio.read_json(run_dir / "run.json")
    if status is None:
        raise RunError(f"{run_dir}: not a defectkit run directory (no run.json); give the folder `defectkit run` wrote")
    metrics = dkio.read_json(run_dir / "metrics.json", {})
    steps: list[StepSummary] = []
    for record in RunDirectory(run_dir).steps():
        manifest = record.manifest
        if manifest is None:
            steps.append(StepSummary(record.dirname, "", "", "not finished", None))
            continue
        figures, more = headline_figures(metrics.get(manifest.get("id", record.id), {}))
        used = "+".join(record.components) or "built in"
        steps.append(
            StepSummary(
                record.dirname, manifest.get("kind", ""), used, manifest.get("status", ""),
                manifest.get("seconds"), figures, more,
            )
        )
    return status, steps


def print_summary(run_dir: str | Path, console: Any) -> None:
    """Print the run's status and a compact table of each step's headline figures on a rich console."""
    from rich.table import Table

    run_dir = Path(run_dir)
    status, steps = summarize_run(run_dir)
    table = Table(title=f"{run_dir.name}: {status.get('status', 'unknown')}", title_justify="left", box=None)
    for column, justify in (("step", "left"), ("component", "left"), ("time", "right"), ("figure", "left"), ("value", "right")):
        # only the figure names may fold: steps, components, times and values stay whole on a narrow console
        table.add_column(column, justify=justify, no_wrap=column != "figure", overflow="fold")
    for step in steps:
        seconds = "" if step.seconds is None else f"{step.seconds:.1f} s"
        rows = step.figures or [("", "")]
        for i, (name, value) in enumerate(rows):
            first = i == 0
            table.add_row(step.dirname if first else "", step.components if first else "", seconds if first else "", name, value)
        if step.more and step.figures:
            table.add_row("", "", "", f"(+{step.more} more in metrics.json)", "")
        if step.status != "done":
            table.add_row("", "", "", step.status, "")
    console.print(table)
