"""``defectkit detect RUN_DIR IMAGE_OR_FOLDER...``: score new images with a finished decodiff run. Light."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("detect")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="output folder (default RUN_DIR/detect)")
@click.option("--threshold", type=float, help="override the run's threshold")
@click.option("--category", help="the object category (default: the run's classifier, or its only category)")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 ... or auto")
def detect_command(
    run_dir: Path,
    inputs: tuple[Path, ...],
    out: Path | None,
    threshold: float | None,
    category: str | None,
    device: str,
) -> None:
    """Score images with a decodiff run: overlays, scores.csv and a verdict per image against its threshold."""
    from defectkit_decodiff.infer import detect_images

    out = out or run_dir / "detect"
    verdicts = detect_images(run_dir, list(inputs), out, threshold, category, device)
    flagged = sum(v.anomalous for v in verdicts)
    for v in verdicts:
        click.echo(f"{'ANOMALOUS' if v.anomalous else 'normal   '}  {v.score:.4f}  {v.path}")
    click.echo(f"{flagged} of {len(verdicts)} images anomalous (threshold {verdicts[0].threshold:.4f}); wrote {out}")
