"""A/B experiment groups: one recipe, several variants, one comparison (seed 000 §9).

A recipe's ``experiments:`` block names groups, each a mapping of ``--set``
key paths to values::

    experiments:
      baseline: {}
      dora:
        "steps[1].train.use": dora
        "steps[1].train.with.optimizer": adamw_8bit

``defectkit run`` runs every group into ``OUT/<group>/`` and writes
``OUT/comparison.json`` and ``OUT/comparison.html``. A step whose outcome
cannot differ from one a group before it already computed (the same resolved
options and data, the same seed and device, after identical steps) is taken
from that group's run instead of being computed again; the log says so.
``defectkit compare RUN ...`` builds the same comparison from any finished runs.

The fingerprint chains every step to all the steps before it, so a step is
reused only after an identical prefix: it can miss a reuse (a step that reads
nothing from a step that differs), never make a wrong one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from defectkit import io as dkio
from defectkit.rundir import RunDirectory

COMPARISON_JSON = "comparison.json"
COMPARISON_HTML = "comparison.html"
#: bar charts drawn at most (the headline figures: AUROCs, FID, losses ...); the table holds every figure
MAX_CHARTS = 24

#: metric names for which lower is better (distances, losses, costs); every other figure: higher is better
LOWER_IS_BETTER = ("fid", "kid", "lpips_distance", "loss", "seconds", "memory", "_mb", "chi2")


def step_fingerprints(resolved: dict[str, Any]) -> list[str]:
    """Per step: a hash of its resolved body, its data, the recipe's seed and device, and the steps before it."""
    shared = {k: resolved.get(k) for k in ("seed", "device", "data")}
    previous = ""
    out = []
    for step in resolved.get("steps", []):
        text = json.dumps({"step": step, "run": shared, "before": previous}, sort_keys=True, default=str)
        previous = hashlib.sha256(text.encode()).hexdigest()
        out.append(previous)
    return out


def find_identical_step(run_dirs: list[Path], dirname: str, fingerprint: str) -> Path | None:
    """The finished step folder ``dirname`` with ``fingerprint`` in one of ``run_dirs``, if any."""
    for run_dir in run_dirs:
        folder = Path(run_dir) / dirname
        manifest = dkio.read_json(folder / "manifest.json")
        if manifest and manifest.get("status") == "done" and manifest.get("fingerprint") == fingerprint:
            return folder
    return None


def _link_or_copy(source: str, target: str) -> None:
    # hard links: a reused checkpoint costs no disk; a copy where the two folders are on different disks
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def reuse_step(source: Path, run_dir: Path, step) -> dict[str, Any]:
    """Bring finished step folder ``source`` into ``run_dir`` (same folder name) with its metrics; its manifest."""
    target = run_dir / step.dirname
    staging = run_dir / f".{step.dirname}.reuse.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, copy_function=_link_or_copy)
    manifest = dkio.read_json(staging / "manifest.json")
    manifest["reused_from"] = os.path.relpath(source, run_dir)
    (staging / "manifest.json").unlink()  # a hard link: writing through it would change the source's manifest
    dkio.write_json(staging / "manifest.json", manifest)
    os.replace(staging, target)
    figures = dkio.read_json(source.parent / "metrics.json", {}).get(step.id)
    if figures is not None:
        metrics = dkio.read_json(run_dir / "metrics.json", {})
        metrics[step.id] = figures
        dkio.write_json(run_dir / "metrics.json", metrics)
    return manifest


def run_experiments(validated, out: Path, resume: bool = False, console=None, command: str = "", verbose: bool = False) -> Path:
    """Run every group of ``validated`` into ``out/<group>`` and write the comparison; return ``out``."""
    from defectkit.run import run_recipe

    out = Path(out).absolute()
    finished: list[Path] = []
    for name, group in validated.groups.items():
        if console is not None:
            console.print(f"experiment group {name}: {out / name}", markup=False, highlight=False)
        run_dir = run_recipe(
            group,
            out=out / name,
            resume=resume and (out / name / "recipe.resolved.yaml").exists(),
            console=console,
            command=command,
            verbose=verbose,
            reuse_from=finished,
        )
        finished.append(run_dir)
    write_comparison(out, {name: out / name for name in validated.groups})
    return out


# -- the comparison -----------------------------------------------------------------------


def _figure(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_figure(v) for v in value)


def build_comparison(runs: dict[str, Path]) -> dict[str, Any]:
    """``{"groups": {group: {step: {metric: value}}}, "costs": {group: {step: {...}}}}`` from finished runs."""
    groups: dict[str, Any] = {}
    costs: dict[str, Any] = {}
    for name, run_dir in runs.items():
        run = RunDirectory(run_dir)  # a folder that is not a run: one line naming it
        metrics = dkio.read_json(run.path / "metrics.json", {})
        groups[name] = {
            step: {k: v for k, v in figures.items() if _figure(v) or _interval(v)} for step, figures in metrics.items()
        }
        costs[name] = {}
        for record in run.steps():
            manifest = record.manifest
            if not manifest:
                continue
            cost: dict[str, Any] = {"seconds": manifest.get("seconds")}
            memory = manifest.get("peak_cuda_mb", manifest.get("peak_rss_mb"))
            if memory is not None:
                cost["peak_memory_mb"] = memory
                cost["memory_kind"] = "cuda_max_allocated" if "peak_cuda_mb" in manifest else "peak_rss"
            per_image = metrics.get(manifest.get("id"), {}).get("seconds_per_image")
            if per_image is not None:
                cost["seconds_per_image"] = per_image
            if manifest.get("reused_from"):
                cost["reused_from"] = manifest["reused_from"]
            costs[name][manifest.get("id", record.id)] = cost
    return {"groups": groups, "costs": costs}


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def best_groups(comparison: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """Per (step, headline metric) shared by two groups or more: the group(s) with the best value.

    Only figures with a direction (AUROCs, FID, losses, rates...: :data:`defectkit.summary.HEADLINE`);
    a threshold or an image count has no best.
    """
    from defectkit.summary import HEADLINE

    values: dict[tuple[str, str], dict[str, float]] = {}
    for group, steps in comparison["groups"].items():
        for step, figures in steps.items():
            for metric, value in figures.items():
                if _figure(value) and HEADLINE.search(metric):
                    values.setdefault((step, metric), {})[group] = value
    best = {}
    for key, by_group in values.items():
        if len(by_group) < 2 or len(set(by_group.values())) < 2:
            continue
        pick = min if lower_is_better(key[1]) else max
        target = pick(by_group.values())
        best[key] = {g for g, v in by_group.items() if v == target}
    return best


def write_comparison(out: Path, runs: dict[str, Path]) -> dict[str, Any]:
    """``comparison.json`` and ``comparison.html`` in ``out``, for the finished ``runs`` (group -> run dir)."""
    out = Path(out)
    comparison = build_comparison(runs)
    dkio.write_json(out / COMPARISON_JSON, comparison)
    dkio.write_text(out / COMPARISON_HTML, _html(comparison))
    return comparison


def _chart(step: str, metric: str, comparison: dict[str, Any]) -> str | None:
    """A bar per group for one figure, with its 95 % interval as an error bar where the metric has one."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, heights, errors = [], [], []
    for group, steps in comparison["groups"].items():
        figures = steps.get(step, {})
        if not _figure(figures.get(metric)):
            continue
        names.append(group)
        heights.append(figures[metric])
        interval = figures.get(f"{metric}_ci95")
        errors.append((figures[metric] - interval[0], interval[1] - figures[metric]) if _interval(interval) else (0, 0))
    if len(names) < 2:
        return None
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 2.4), dpi=100)
    ax.bar(names, heights, color="C0", yerr=list(zip(*errors, strict=True)), capsize=3)
    ax.set_title(f"{step}: {metric}", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _html(comparison: dict[str, Any]) -> str:
    import html

    from defectkit.summary import format_value

    groups = list(comparison["groups"])
    best = best_groups(comparison)
    keys = sorted({(s, m) for steps in comparison["groups"].values() for s, f in steps.items() for m in f})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>comparison</title><style>"
        "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem}"
        "table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2rem .5rem}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums} td.best{background:#dcfce7;font-weight:600}"
        "img{margin:.3rem;border:1px solid #eee}</style></head><body><h1>Comparison of experiment groups</h1>",
        "<p>The best value of each figure shared by two groups or more is marked (lower is better for "
        "distances, losses, seconds and memory). Intervals are 95 % where a metric has one.</p>",
        "<table><tr><th>step</th><th>figure</th>" + "".join(f"<th>{html.escape(g)}</th>" for g in groups) + "</tr>",
    ]
    for step, metric in keys:
        if metric.endswith("_ci95"):
            continue
        cells = []
        for group in groups:
            figures = comparison["groups"][group].get(step, {})
            value = figures.get(metric)
            text = "" if value is None else format_value(value)
            interval = figures.get(f"{metric}_ci95")
            if _interval(interval):
                text += f" [{format_value(interval[0])}, {format_value(interval[1])}]"
            marked = " best" if group in best.get((step, metric), ()) else ""
            cells.append(f"<td class='num{marked}'>{html.escape(text)}</td>")
        parts.append(f"<tr><td>{html.escape(step)}</td><td>{html.escape(metric)}</td>{''.join(cells)}</tr>")
    parts.append("</table><h2>Cost</h2><table><tr><th>group</th><th>step</th><th>seconds</th><th>peak memory (MB)</th>"
                 "<th>s / image</th><th>reused from</th></tr>")
    for group, steps in comparison["costs"].items():
        for step, cost in steps.items():
            memory = cost.get("peak_memory_mb")
            parts.append(
                f"<tr><td>{html.escape(group)}</td><td>{html.escape(step)}</td>"
                f"<td class='num'>{format_value(cost.get('seconds') or 0.0)}</td>"
                f"<td class='num'>{'' if memory is None else format_value(memory)} {cost.get('memory_kind', '')}</td>"
                f"<td class='num'>{format_value(cost['seconds_per_image']) if 'seconds_per_image' in cost else ''}</td>"
                f"<td>{html.escape(cost.get('reused_from', ''))}</td></tr>"
            )
    parts.append("</table><h2>Charts</h2>")
    from defectkit.summary import HEADLINE

    charted = [(s, m) for s, m in keys if not m.endswith("_ci95") and HEADLINE.search(m)][:MAX_CHARTS]
    for step, metric in charted:
        uri = _chart(step, metric, comparison)
        if uri is not None:
            parts.append(f"<img alt='{html.escape(step)}: {html.escape(metric)}' src='{uri}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def print_comparison(path: Path, console) -> None:
    """The headline figures of every group side by side on a rich console (the best one in bold green)."""
    from rich.table import Table

    from defectkit.summary import HEADLINE, format_value

    comparison = dkio.read_json(path)
    groups = list(comparison["groups"])
    best = best_groups(comparison)
    table = Table(title="experiment groups", title_justify="left", box=None)
    table.add_column("step", no_wrap=True)
    table.add_column("figure", overflow="fold")
    for group in groups:
        table.add_column(group, justify="right", no_wrap=True)
    keys = sorted({(s, m) for steps in comparison["groups"].values() for s, f in steps.items() for m in f})
    for step, metric in keys:
        if metric.endswith("_ci95") or not HEADLINE.search(metric):
            continue
        cells = []
        for group in groups:
            value = comparison["groups"][group].get(step, {}).get(metric)
            text = "" if value is None else format_value(value)
            cells.append(f"[bold green]{text}[/]" if group in best.get((step, metric), ()) else text)
        table.add_row(step, metric, *cells)
    seconds = [
        format_value(sum(c.get("seconds") or 0.0 for c in comparison["costs"][g].values() if not c.get("reused_from")))
        for g in groups
    ]
    table.add_row("", "seconds computed", *seconds)
    console.print(table)
