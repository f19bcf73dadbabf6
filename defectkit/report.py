"""``report.html``: one self-contained page per run.

Images and curves are embedded as data URIs so the page can be mailed or
archived alone; artifacts are linked by relative path.
"""

from __future__ import annotations

import base64
import html
import io
import json
import mimetypes
from pathlib import Path
from typing import Any

import yaml

from defectkit import io as dkio

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.status-finished{color:#15803d} .status-failed,.status-interrupted{color:#b91c1c}
figure{display:inline-block;margin:.3rem;vertical-align:top;max-width:48%} figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:12px;color:#555} img.curves{max-width:100%} code{font-size:12px} pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:12px}
"""


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``scalars.jsonl`` as ``{tag: [(step, value), ...]}`` (a line cut by an interrupted run is skipped)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return curves
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interrupted run
        curves.setdefault(row["tag"], []).append((row["step"], row["value"]))
    return curves


def _smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's exponential moving average, so a noisy loss shows its trend."""
    out, last = [], values[0]
    for value in values:
        last = weight * last + (1 - weight) * value
        out.append(last)
    return out


def _curves_png(title: str, curves: dict[str, list[tuple[int, float]]]) -> str:
    """One figure per step: a small panel per curve, the raw points faint and the trend on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.5 * rows), dpi=100, squeeze=False)
    for ax, (tag, points) in zip(axes.flat, sorted(curves.items()), strict=False):
        points = sorted(points)
        steps, values = [p[0] for p in points], [p[1] for p in points]
        if len(values) > 20:
            ax.plot(steps, values, lw=0.8, alpha=0.3, color="C0")
            ax.plot(steps, _smoothed(values), lw=1.4, color="C0")
        else:
            ax.plot(steps, values, lw=1.2, marker="." if len(values) < 10 else None, color="C0")
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _grouped_curves(curves: dict[str, list[tuple[int, float]]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``step_id/tag`` curves grouped by step id (curves of the run itself, ``run/...``, left out)."""
    groups: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for tag, points in curves.items():
        if len(points) < 2 or tag.startswith("run/"):
            continue
        step_id, _, name = tag.partition("/")
        groups.setdefault(step_id if name else "", {})[name or tag] = points
    return groups


#: options longer than this on one line fold into a collapsible block
_INLINE_OPTIONS = 160


def _options(value: Any) -> str:
    """A step's options as HTML: one line when short, else a collapsible block with every value whole."""
    if not value:
        return ""
    line = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    if len(line) <= _INLINE_OPTIONS:
        return f"<code>{html.escape(line)}</code>"
    keys = ", ".join(map(str, value)) if isinstance(value, dict) else ""
    block = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100)
    return (
        f"<details><summary><code>{html.escape(keys)}</code></summary>"
        f"<pre>{html.escape(block)}</pre></details>"
    )


def _shown_options(kind: str, use: Any, options: Any) -> Any:
    """The options that apply to the mode the step chose (no VAE for a pixel latent); all, if unknown."""
    from defectkit.recipe import STEP_KINDS, applicable_options

    component_kind = STEP_KINDS.get(kind)
    if component_kind is None or not isinstance(use, str):
        return options
    try:
        from defectkit.plugins import get_registry

        model = get_registry().get(component_kind, use).load_config_model()
    except Exception:  # the plugin is not installed here: show what the recipe holds
        return options
    return applicable_options(model, options)


def _recipe_summary(resolved: dict[str, Any]) -> list[str]:
    """What the run did, in a table: data, seed, device and one row per step."""
    parts = ["<h2>Recipe</h2><table>"]
    data = resolved.get("data") or {}
    if data:
        described = ", ".join(
            f"{key} {html.escape(str(data[key]))}" for key in ("format", "category", "root") if data.get(key)
        )
        parts.append(f"<tr><th>data</th><td colspan=2>{described}</td></tr>")
    for key in ("seed", "device"):
        if key in resolved:
            parts.append(f"<tr><th>{key}</th><td colspan=2>{html.escape(str(resolved[key]))}</td></tr>")
    for number, step in enumerate(resolved.get("steps", []), start=1):
        for kind, spec in step.items():
            spec = spec or {}
            use = spec.get("use", "")
            single = use[0] if isinstance(use, list) and len(use) == 1 else use
            use = ", ".join(use) if isinstance(use, list) else str(use or "built in")
            own_data = f"data: {_options(spec['data'])} " if spec.get("data") else ""  # a step's own data: block
            options = _shown_options(kind, single, spec.get("with"))
            parts.append(
                f"<tr><th>{number}. {html.escape(kind)}</th><td>{html.escape(use)}</td>"
                f"<td>{own_data}{_options(options)}</td></tr>"
            )
    parts.append("</table>")
    return parts


def render_report(run_dir: str | Path, options: Any = None) -> Path:
    """Write ``RUN_DIR/report.html`` from what the run directory holds now."""
    run_dir = Path(run_dir)
    resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text(encoding="utf-8")) or {}
    environment = dkio.read_json(run_dir / "environment.json", {})
    status = dkio.read_json(run_dir / "run.json", {})
    metrics = dkio.read_json(run_dir / "metrics.json", {})
    title = getattr(options, "title", None) or resolved.get("name", run_dir.name)
    max_images = getattr(options, "max_images", 48)

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{_CSS}</style></head><body>")
    parts.append(f"<h1>{html.escape(title)}</h1>")
    state = status.get("status", "unknown")
    parts.append(
        f"<p>{html.escape(resolved.get('description', ''))}</p><p>status: "
        f"<b class='status-{html.escape(state)}'>{html.escape(state)}</b> · started {html.escape(status.get('started', '?'))}"
        f" · finished {html.escape(status.get('finished', '-'))}</p>"
    )

    parts.extend(_recipe_summary(resolved))

    parts.append("<h2>Metrics</h2>")
    if metrics:
        for step_id, figures in metrics.items():
            parts.append(f"<h3>{html.escape(step_id)}</h3><table><tr><th>metric</th><th>value</th></tr>")
            for name, value in figures.items():
                parts.append(f"<tr><td>{html.escape(name)}</td><td class='num'>{_fmt(value)}</td></tr>")
            parts.append("</table>")
    else:
        parts.append("<p>No metrics recorded.</p>")

    groups = _grouped_curves(read_scalars(run_dir / "scalars.jsonl"))
    if groups:
        parts.append("<h2>Training curves</h2>")
        for step_id, curves in groups.items():
            alt = html.escape(", ".join(f"{step_id}/{tag}" if step_id else tag for tag in sorted(curves)))
            parts.append(f"<p><img class='curves' alt='{alt}' src='{_curves_png(step_id, curves)}'></p>")

    parts.append(
        "<h2>Steps</h2><table><tr><th>step</th><th>kind</th><th>components</th><th>status</th>"
        "<th>seconds</th><th>artifacts</th></tr>"
    )
    step_dirs = sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name[:2].isdigit())
    manifests = []
    for folder in step_dirs:
        manifest = dkio.read_json(folder / "manifest.json")
        manifests.append((folder, manifest))
        if manifest is None:
            parts.append(
                f"<tr><td>{html.escape(folder.name)}</td><td colspan=3>not finished</td><td></td><td></td></tr>"
            )
            continue
        used = ", ".join(f"{c['name']} ({c['plugin']})" for c in manifest.get("components", [])) or "built in"
        links = " ".join(
            f"<a href='{html.escape(rel)}'>{html.escape(name)}</a>"
            for name, rel in manifest.get("artifacts", {}).items()
        )
        parts.append(
            f"<tr><td>{html.escape(folder.name)}</td><td>{html.escape(manifest.get('kind', ''))}</td>"
            f"<td>{html.escape(used)}</td><td>{html.escape(manifest.get('status', ''))}</td>"
            f"<td class='num'>{manifest.get('seconds', 0):.1f}</td><td>{links}</td></tr>"
        )
    parts.append("</table>")

    for folder, manifest in manifests:
        figures = (manifest or {}).get("figures", [])[:max_images]
        if not figures:
            continue
        parts.append(f"<h2>Images: {html.escape(folder.name)}</h2>")
        for figure in figures:
            uri = _data_uri(run_dir / figure["path"])
            if uri is None:
                continue
            caption = html.escape(figure.get("caption") or Path(figure["path"]).name)
            parts.append(f"<figure><img alt='{caption}' src='{uri}'><figcaption>{caption}</figcaption></figure>")

    parts.append("<h2>Environment</h2><table>")
    for key in ("defectkit", "python", "torch", "cuda", "device", "processes", "seed", "platform", "command"):
        if key in environment:
            parts.append(f"<tr><th>{key}</th><td>{_fmt(environment[key])}</td></tr>")
    parts.append("</table><h3>Plugins</h3><table><tr><th>plugin</th><th>distribution</th><th>version</th></tr>")
    for name, info in environment.get("plugins", {}).items():
        parts.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(info.get('distribution', ''))}</td>"
            f"<td>{html.escape(info.get('version', ''))}</td></tr>"
        )
    parts.append("</table><h2>Resolved recipe</h2>")
    parts.append(f"<pre>{html.escape(yaml.safe_dump(resolved, sort_keys=False))}</pre>")
    parts.append(
        "<p>Files: <a href='metrics.json'>metrics.json</a> · <a href='recipe.resolved.yaml'>recipe.resolved.yaml</a>"
        " · <a href='environment.json'>environment.json</a> · <a href='run.log'>run.log</a></p>"
    )
    parts.append("</body></html>")
    return dkio.write_text(run_dir / "report.html", "\n".join(parts))
