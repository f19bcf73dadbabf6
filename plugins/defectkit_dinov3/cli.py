"""``defectkit dinov3 predict``: inference on one image, a folder or several. Light: heavy imports inside."""

from __future__ import annotations

import click


@click.group("dinov3")
def dinov3_group() -> None:
    """DINOv3 multi-task defect classifier."""


@dinov3_group.command("predict")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="folder for the results")
@click.option("--threshold", default=0.5, show_default=True, help="mask probability threshold")
@click.option("--device", default="cpu", show_default=True, help="torch device")
def predict_command(checkpoint: str, inputs: tuple[str, ...], out: str, threshold: float, device: str) -> None:
    """Classify and segment INPUTS (image files or folders) with a dinov3_multitask CHECKPOINT folder."""
    from defectkit_dinov3.predict import predict_files

    summary = predict_files(checkpoint, inputs, out, threshold=threshold, device=device)
    click.echo(f"{summary['images']} images -> {out}/predictions.csv, results.json, visualizations/")
