"""The ``defectkit`` command line.

Start-up stays fast: only click and the plugin registry load here; recipes,
pydantic, torch and the plugins' heavy code are imported inside the commands
that need them. Plugins add commands through ``defectkit_register_commands``.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from defectkit import __version__
from defectkit.errors import DefectkitError
from defectkit.plugins import get_registry

RECIPE_SUFFIXES = (".yaml", ".yml")


def recipe_dirs() -> list[Path]:
    """Where ready recipes live: ./recipes, then those shipped with the package."""
    here = Path(__file__).resolve().parent
    candidates = [Path.cwd() / "recipes", here / "_recipes", here.parent / "recipes"]
    seen: list[Path] = []
    for path in candidates:
        if path.is_dir() and path.resolve() not in seen:
            seen.append(path.resolve())
    return seen


def find_recipe(name_or_path: str) -> Path:
    """A recipe path as given, or a ready recipe's name (``quickstart``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in RECIPE_SUFFIXES or "/" in name_or_path:
        return path
    for folder in recipe_dirs():
        for suffix in RECIPE_SUFFIXES:
            candidate = folder / f"{name_or_path}{suffix}"
            if candidate.exists():
                return candidate
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="defectkit")
def cli() -> None:
    """Generate defect images, train and run detectors, and measure them, from YAML recipes.

    \b
    defectkit plugins                      what is installed
    defectkit recipes                      the ready recipes
    defectkit run recipes/quickstart.yaml  run one (offline, CPU, minutes)
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("-v", "--verbose", is_flag=True, help="also list every component with its summary (licences, extras)")
def plugins(as_json: bool, verbose: bool) -> None:
    """List installed plugins, their versions, hooks and components."""
    from defectkit.components import KINDS

    registry = get_registry()
    infos = sorted(registry.plugins.values(), key=lambda p: (p.distribution != "defectkit", p.name))
    ordered = sorted(registry.components(), key=lambda c: (KINDS.index(c.kind), c.name))
    by_plugin: dict[str, list] = {}
    for component in ordered:
        by_plugin.setdefault(component.plugin, []).append(component)
    if as_json:
        listing = []
        for info in infos:
            entry = info.to_dict()
            entry["component_details"] = [c.to_dict() for c in by_plugin.get(info.name, [])]
            listing.append(entry)
        click.echo(json.dumps(listing, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title="defectkit plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "status", "import", "components"):
        table.add_column(column, overflow="fold", justify="right" if column == "import" else "left")
    for info in infos:
        components = "\n".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in info.components.items())
        status = "[green]ok[/]" if info.status == "ok" else "[red]error[/]"
        hints = sorted({c.install_hint() for c in by_plugin.get(info.name, [])} - {""})
        if info.status == "ok" and hints:
            status = "[yellow]needs extra[/]\n" + "\n".join(escape(h) for h in hints)
        seconds = "-" if info.import_seconds is None else f"{info.import_seconds * 1000:.0f} ms"
        table.add_row(info.name, info.distribution, info.version, status, seconds, components or "-")
    console.print(table)
    if verbose:
        details = Table(title="components", title_justify="left")
        for column in ("kind", "name", "plugin", "summary", "needs"):
            details.add_column(column, overflow="fold")
        for component in ordered:
            extra = f"{component.owner}[{component.extra}]" if component.extra else ""
            hint = component.install_hint()
            needs = f"[yellow]missing: {escape(hint)}[/]" if hint else (escape(extra) or "core")
            details.add_row(component.kind, component.name, component.plugin, escape(component.summary or "-"), needs)
        console.print(details)
    for info in registry.failed():
        console.print(f"[red]{info.name}[/] ({info.distribution} {info.version}): ", end="")
        console.print("; ".join(info.errors), markup=False, highlight=False)
        if info.hint:
            console.print(f"  hint: {info.hint}", markup=False, highlight=False)
    if not infos:
        console.print("no plugins loaded (is DEFECTKIT_LOAD_PLUGINS set to an empty value?)")


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="override a recipe value")
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check a recipe (structure, component names, options) without running it."""
    validated = _load(recipe, overrides)
    steps = ", ".join(f"{s.kind} {'+'.join(c.name for c in s.components) or ''}".strip() for s in validated.steps)
    groups = f"; experiment groups: {', '.join(validated.groups)}" if validated.groups else ""
    click.echo(f"{validated.path}: valid ({len(validated.steps)} steps: {steps}{groups})")


@cli.command()
@click.argument("recipe")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="run directory (default runs/NAME-TIME)")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="override a recipe value")
@click.option("--dry-run", is_flag=True, help="validate and show the plan; load no model")
@click.option("--resume", is_flag=True, help="continue the run in --out: skip finished steps, resume the current one")
@click.option("--print-config", is_flag=True, help="print the resolved recipe (all defaults filled in) and stop")
@click.option("--quiet", "-q", is_flag=True, help="no progress, log or results table: print only the run directory")
@click.option("--verbose", "-v", is_flag=True, help="also show the libraries' own warnings and progress bars")
def run(
    recipe: str,
    out: Path | None,
    overrides: tuple[str, ...],
    dry_run: bool,
    resume: bool,
    print_config: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Run a recipe into a run directory, then print each step's figures."""
    validated = _load(recipe, overrides)
    if print_config:
        import yaml

        click.echo(yaml.safe_dump(validated.resolved, sort_keys=False, allow_unicode=True), nl=False)
        return
    if dry_run:
        for name, group in (validated.groups or {"": validated}).items():
            label = f" (experiment group {name})" if name else ""
            click.echo(f"{validated.path}: valid; would run {len(group.steps)} steps{label}:")
            for step in group.steps:
                used = ", ".join(f"{c.name} ({c.plugin})" for c in step.components)
                click.echo(f"  {step.dirname}: {step.kind} with {used}" if used else f"  {step.dirname}: {step.kind} (built in)")
        return
    from rich.console import Console

    console = None if quiet else Console(stderr=True)
    command = "defectkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if validated.groups:
        from defectkit.experiments import run_experiments
        from defectkit.run import default_run_dir

        if resume and out is None:
            raise DefectkitError("--resume needs --out DIR: the folder of the experiment groups to continue")
        folder = run_experiments(
            validated, out or default_run_dir(validated), resume=resume, console=console, command=command, verbose=verbose
        )
        if quiet:
            click.echo(str(folder))
            return
        _show_comparison(folder)
        return
    from defectkit.run import run_recipe

    run_dir = run_recipe(validated, out=out, resume=resume, console=console, command=command, verbose=verbose)
    if quiet:
        click.echo(str(run_dir))
        return
    _show(run_dir)


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="where comparison.json/.html go")
def compare(runs: tuple[Path, ...], out: Path) -> None:
    """Compare finished runs side by side: comparison.json and comparison.html in --out."""
    from defectkit.experiments import write_comparison

    names: dict[str, Path] = {}
    for run_dir in runs:
        name = run_dir.resolve().name
        while name in names:  # two runs with one folder name: keep both, told apart by their parents
            name = f"{run_dir.resolve().parent.name}/{name}"
        names[name] = run_dir
    write_comparison(out, names)
    _show_comparison(out)


def _show_comparison(folder: Path) -> None:
    from rich.console import Console

    from defectkit.experiments import COMPARISON_HTML, COMPARISON_JSON, print_comparison

    print_comparison(folder / COMPARISON_JSON, Console())
    click.echo(f"comparison: {folder / COMPARISON_HTML}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def show(run_dir: Path) -> None:
    """Print a run's status and each step's figures (what `run` prints at its end)."""
    _show(run_dir)


def _show(run_dir: Path) -> None:
    from rich.console import Console

    from defectkit.summary import print_summary

    print_summary(run_dir, Console())
    # paths by click, not rich: a path a user copies must never be wrapped
    click.echo(f"run: {run_dir}")
    report = run_dir / "report.html"
    if report.exists():
        click.echo(f"report: {report}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="output folder (default RUN_DIR/detect)")
@click.option("--step", "step", help="the detect step (folder 02_detect or id); default: the last one with a predictor")
@click.option("--threshold", type=float, help="override the step's threshold")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 ... or auto")
def detect(
    run_dir: Path, inputs: tuple[Path, ...], out: Path | None, step: str | None, threshold: float | None, device: str
) -> None:
    """Score new images (files or folders) with a finished run's detect step, whatever its detector.

    Writes OUT/anomaly_maps (the layout `defectkit eval-maps` reads), overlays, scores.csv (path,score, as the
    detect step's) and verdicts.csv (score against the threshold).
    """
    from defectkit.detect import detect_files, find_detect_step

    opened = find_detect_step(run_dir, step)
    out = out or run_dir / "detect"
    predictor = opened.open(device)
    title = getattr(predictor, "title", "") or opened.component.name
    verdicts = detect_files(predictor, list(inputs), out, threshold, title)
    for v in verdicts:
        click.echo(f"{'ANOMALOUS' if v.anomalous else 'normal   '}  {v.prediction.score:.4f}  {v.path}")
    limit = verdicts[0].threshold
    click.echo(
        f"{sum(v.anomalous for v in verdicts)} of {len(verdicts)} images anomalous (threshold {limit:.4f}, "
        f"{opened.component.name} step {opened.record.dirname}); wrote {out}"
    )


@cli.command()
def recipes() -> None:
    """List the ready recipes with a one-line description each."""
    import yaml

    shown: set[str] = set()
    for folder in recipe_dirs():
        for path in sorted(p for p in folder.iterdir() if p.suffix in RECIPE_SUFFIXES):
            if path.stem in shown:
                continue
            shown.add(path.stem)
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                description = (
                    str(data.get("description", "")).strip().splitlines()[0] if data.get("description") else ""
                )
            except (yaml.YAMLError, OSError, AttributeError):
                description = "(cannot be read; check it with `defectkit validate`)"
            try:
                shown_path = path.relative_to(Path.cwd())
            except ValueError:
                shown_path = path
            click.echo(f"{path.stem:28} {description}\n{'':28} {shown_path}")
    if not shown:
        click.echo("no ready recipes found")


def _load(recipe: str, overrides: tuple[str, ...]):
    from defectkit.recipe import load_recipe

    validated = load_recipe(find_recipe(recipe), get_registry(), overrides)
    for note in validated.notes:
        click.echo(f"defectkit: note: {note}", err=True)
    return validated


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line and exit status 2 for any user mistake, never a traceback."""
    try:
        registry = get_registry()
        for info in registry.slow():
            click.echo(
                f"defectkit: note: plugin {info.name} ({info.distribution}) took {info.import_seconds:.1f} s to "
                "import, which slows every command; its hooks module should import nothing heavy "
                "(or leave it out with DEFECTKIT_LOAD_PLUGINS)",
                err=True,
            )
        registry.register_commands(cli)
        result = cli.main(args=argv, prog_name="defectkit", standalone_mode=False)
    except DefectkitError as exc:
        click.echo(f"defectkit: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("defectkit: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)
