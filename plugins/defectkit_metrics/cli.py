"""``defectkit eval-maps``: the detection figures of anomaly maps from any tool.

Only click is imported here; torch and the metrics load when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval-maps")
@click.argument("maps_dir", type=click.Path(path_type=Path))
@click.option(
    "--gt",
    "gt_root",
    required=True,
    type=click.Path(path_type=Path),
    help="MVTec-layout category root (test/<type>/, ground_truth/<type>/<stem>_mask.png)",
)
@click.option("--scores", "scores_path", type=click.Path(path_type=Path), help="CSV path,score (default: map maximum)")
@click.option("--fpr-limit", default=0.3, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
def eval_maps(maps_dir: Path, gt_root: Path, scores_path: Path | None, fpr_limit: float, device: str) -> None:
    """Score anomaly maps against an MVTec-layout ground truth; print JSON.

    MAPS_DIR mirrors the category's test/ tree: <defect_type>/<stem>.npy, a
    float H×W map per test image (good/ included). A map of another size is
    resized bilinearly to its mask (masks are never resized). Keys:
    image_auroc, image_ap, image_f1max, pixel_auroc, pixel_ap, pixel_f1max,
    pixel_aupro (integrated to --fpr-limit and divided by it).
    """
    from defectkit.devices import resolve_device
    from defectkit_metrics.evaluate import evaluate_map_folder
    from defectkit_metrics.inputs import MissingInputError, mvtec_test_samples

    if not maps_dir.is_dir():
        raise MissingInputError(f"{maps_dir}: no such folder of anomaly maps")
    samples = mvtec_test_samples(gt_root)
    target = resolve_device(device)
    figures = evaluate_map_folder(samples, maps_dir, scores_path, fpr_limit, target)
    click.echo(json.dumps(figures, indent=2))
