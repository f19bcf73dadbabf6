"""The shipped NEU-DET recipes: valid as written, and the SD 1.5 one runs end to end with --set pointing
every model at a tiny local folder and the data at synthetic NEU-like steel."""

import json
from pathlib import Path

from defectkit.generated import read_generated
from defectkit.plugins import get_registry
from defectkit.recipe import load_recipe
from defectkit.run import run_recipe

RECIPES = Path(__file__).resolve().parents[3] / "recipes"
T = "defectkit_metrics.tiny"  # offline stand-ins for the extractors


def test_neudet_sdxl_is_valid(registered, tmp_path):
    # validation looks for the data folder (not its images): an empty one stands in for NEU-DET
    validated = load_recipe(RECIPES / "neudet_sdxl.yaml", get_registry(), overrides=[f"data.root={tmp_path}"])
    train = validated.resolved["steps"][1]["train"]
    assert train["use"] == ["dora"] and train["with"]["backend"] == "sdxl"
    generate = validated.resolved["steps"][2]["generate"]["with"]
    assert generate["backend"] == {"use": "sdxl", "with": generate["backend"]["with"]}
    assert generate["scheduler"]["use"] == "unipc" and generate["steps"] == 20 and generate["guidance_rescale"] == 0.7
    assert [c["use"] for c in generate["controlnets"]] == ["softedge", "depth"]
    # nested components are resolved with every default, as --print-config promises
    assert generate["backend"]["with"]["dtype"] == "bf16" and "cpu_offload" in generate["backend"]["with"]
    assert "solver_order" in generate["scheduler"]["with"] and "timestep_spacing" in generate["scheduler"]["with"]
    assert all("controlnet" in c["with"] for c in generate["controlnets"])
    assert validated.resolved["steps"][3]["evaluate"]["use"] == ["fid", "kid", "lpips", "edge_ssim", "lbp"]


def test_neudet_sd15_controlnet_runs_on_tiny_models(registered, tiny_models, tmp_path):
    metric = {"image_size": 32, "batch_size": 8}
    overrides = [
        "data.format=synthetic",
        "data.category=steel",
        "data.root=null",
        "data.with={kind: neu, size: 64, n_train: 3, n_test: 1}",
        f"steps[1].generate.with.backend.with.model={tiny_models['sd15']}",
        f"steps[1].generate.with.controlnets[0].with.controlnet={tiny_models['sd15_controlnet']}",
        f"steps[1].generate.with.controlnets[1].with.controlnet={tiny_models['sd15_controlnet']}",
        f"steps[1].generate.with.controlnets[1].with.estimator={tiny_models['depth']}",
        "steps[1].generate.with.images_per_class=1",
        "steps[1].generate.with.width=32",
        "steps[1].generate.with.height=32",
        "steps[1].generate.with.steps=2",
        "steps[1].generate.with.backend.with.dtype=fp32",
        f"steps[2].evaluate.with.fid={json.dumps({**metric, 'extractor': f'{T}:tiny_features'})}",
        f"steps[2].evaluate.with.kid={json.dumps({**metric, 'extractor': f'{T}:tiny_features', 'subsets': 2})}",
        f"steps[2].evaluate.with.lpips={json.dumps({**metric, 'extractor': f'{T}:tiny_pyramid'})}",
        f"steps[2].evaluate.with.edge_ssim={json.dumps(metric)}",
        f"steps[2].evaluate.with.lbp={json.dumps(metric)}",
        "device=cpu",
    ]
    validated = load_recipe(RECIPES / "neudet_sd15_controlnet.yaml", get_registry(), overrides=overrides)
    run = run_recipe(validated, out=tmp_path / "run")
    samples = read_generated(run / "02_generate" / "generated")
    assert sorted(s.defect_type for s in samples) == sorted(
        ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    )
    figures = json.loads((run / "metrics.json").read_text())["evaluate"]
    assert {"fid", "kid_mean", "lpips", "edge_ssim", "lbp_intersection"} <= set(figures)
    assert (run / "report.html").is_file()
