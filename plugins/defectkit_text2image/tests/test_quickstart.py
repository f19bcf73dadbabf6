"""recipes/quickstart.yaml end to end, shrunk with --set overrides to a few seconds (the real one: README)."""

from __future__ import annotations

import json
from pathlib import Path

from defectkit.plugins import get_registry
from defectkit.recipe import load_recipe
from defectkit.run import run_recipe

QUICKSTART = Path(__file__).resolve().parents[3] / "recipes" / "quickstart.yaml"
SMALL = (
    "data.with.n_train=4",
    "data.with.n_test=2",
    # the steel data block is one YAML anchor: the generation metric's data shrinks with it
    "steps[0].train.data.with.n_train=3",
    "steps[0].train.data.with.n_test=2",
    "steps[0].train.with.epochs=2",
    "steps[0].train.with.sample_every=1",
    "steps[0].train.with.sample_steps=2",
    "steps[0].train.with.model.channels=[8, 16, 16]",
    "steps[0].train.with.model.norm_groups=4",
    "steps[1].generate.with.per_class=2",
    "steps[1].generate.with.steps=2",
    "steps[3].train.with.steps=2",
    "steps[3].train.with.batch_size=4",
    "steps[3].train.with.warmup_steps=1",
    "steps[4].detect.with.overlays=2",
)


def test_the_quickstart_runs_both_sides_into_one_report(tmp_path):
    validated = load_recipe(QUICKSTART, get_registry(), overrides=SMALL)
    assert validated.steps[0].data_config.kind == "neu" and validated.data_config.kind == "mvtec"
    run_dir = run_recipe(validated, out=tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["text2image"]["classes"] == 3
    assert metrics["generate"]["images"] == 6
    assert set(metrics["evaluate_generation"]) >= {"lbp_intersection", "lbp_chi2", "lbp_intersection/scratches"}
    assert {"image_auroc", "pixel_auroc", "pixel_aupro"} <= set(metrics["evaluate"])
    assert (run_dir / "report.html").is_file()
