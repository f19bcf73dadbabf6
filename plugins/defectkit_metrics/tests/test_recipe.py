"""Evaluate steps in recipes run end to end with tiny components registered for the test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict
from defectkit_metrics.detection import DETECTION_KEYS, detection_metrics
from defectkit_metrics.inputs import mvtec_test_samples
from defectkit_metrics.tests import helpers

H = helpers.__name__
T = "defectkit_metrics.tiny"


@pytest.fixture
def tiny(register_plugin, tmp_path):
    register_plugin(helpers.TinyPlugin(), "tiny")
    return helpers.write_mvtec(tmp_path / "widget")


def recipe(root, steps):
    return {
        "version": 1,
        "name": "metrics-test",
        "device": "cpu",
        "data": {"format": "tiny_mvtec", "root": str(root)},
        "steps": steps,
    }


def test_detection_classification_segmentation_in_a_recipe(tiny, tmp_path):
    steps = [
        {"detect": {"use": "tiny_detector"}},
        {
            "evaluate": {
                "use": ["detection", "pixel_aupro", "classification", "segmentation"],
                "with": {"detection": {"fpr_limit": 0.3}},
            }
        },
    ]
    run = run_recipe_dict(recipe(tiny, steps), tmp_path / "run")
    figures = json.loads((run / "metrics.json").read_text())["evaluate"]
    # the same figures as computing directly on the maps the detector wrote
    samples = mvtec_test_samples(tiny)
    maps = [np.load(run / "01_detect" / "maps" / s.defect_type / f"{s.image_path.stem}.npy") for s in samples]
    direct = detection_metrics(None, [s.label for s in samples], maps, [s.load_mask() for s in samples])
    for key in DETECTION_KEYS:
        assert figures[key] == pytest.approx(direct[key], abs=1e-9)
    # 8 defective samples, one scratch predicted as dent
    assert figures["accuracy"] == pytest.approx(11 / 12)
    assert figures["recall/scratch"] == pytest.approx(3 / 4)
    assert figures["precision/dent"] == pytest.approx(4 / 5)
    assert 0 < figures["iou"] <= figures["dice"] <= 1
    manifest = json.loads((run / "02_evaluate" / "manifest.json").read_text())
    assert manifest["figures"][0]["path"].endswith("confusion_matrix.png")
    assert (run / "02_evaluate" / "confusion_matrix.png").stat().st_size > 1000


def test_generation_metrics_in_a_recipe_with_models_built_in_the_test(tiny, tmp_path):
    features, pyramid = f"{T}:tiny_features", f"{T}:tiny_pyramid"
    options = {"image_size": 32, "batch_size": 8}
    steps = [
        {"generate": {"use": "tiny_generator"}},
        {
            "evaluate": {
                "use": ["fid", "kid", "lpips", "ic_lpips", "clip_score", "ssim", "edge_ssim", "lbp", "inception_score"],
                "with": {
                    "fid": {**options, "extractor": features, "per_defect_type": True},
                    "kid": {**options, "extractor": features, "subsets": 5},
                    "lpips": {**options, "extractor": pyramid},
                    "ic_lpips": {**options, "extractor": pyramid},
                    "clip_score": {**options, "model": f"{H}:tiny_clip"},
                    "ssim": options,
                    "edge_ssim": {**options, "edges": "canny"},
                    "lbp": options,
                    "inception_score": {**options, "extractor": f"{T}:tiny_classifier", "splits": 2},
                },
            }
        },
    ]
    run = run_recipe_dict(recipe(tiny, steps), tmp_path / "run")
    figures = json.loads((run / "metrics.json").read_text())["evaluate"]
    # every figure is reported with the extractor that produced it
    assert figures["fid_extractor"] == features and figures["kid_extractor"] == features
    assert figures["lpips_extractor"] == pyramid and figures["ic_lpips_extractor"] == pyramid
    assert figures["clip_score_model"] == f"{H}:tiny_clip"
    assert figures["inception_score_extractor"] == f"{T}:tiny_classifier"
    # gen_eval holds 3 real images per type: KID's subset size drops from 1000 to 3 x 2 types
    assert figures["kid_subset_size"] == 6.0
    assert {"fid/scratch", "fid/dent"} <= set(figures)
    assert figures["fid"] > 0 and figures["lpips"] > 0 and figures["ic_lpips"] > 0
    assert figures["lpips_pairing"] == "nearest"
    assert -1 <= figures["ssim"] <= 1 and -1 <= figures["edge_ssim"] <= 1
    assert 0 < figures["lbp_intersection"] <= 1 and 0 <= figures["lbp_chi2"] < 1
    assert 0 <= figures["clip_score"] <= 100
    assert 1 <= figures["inception_score_mean"] <= 5
    # one real-against-generated sheet per evaluate step (not one per metric), shown in the report
    manifest = json.loads((run / "02_evaluate" / "manifest.json").read_text())
    assert [f["path"] for f in manifest["figures"]] == ["02_evaluate/real_vs_generated.png"]
    sheet = Image.open(run / "02_evaluate" / "real_vs_generated.png")
    assert sheet.size == (8 * 96 + 24, 14 + 2 * 96)  # 4 real + 4 generated per row, two defect types


def test_missing_artifact_is_a_clear_error(tiny, tmp_path):
    steps = [{"generate": {"use": "tiny_generator"}}, {"evaluate": {"use": ["detection"]}}]
    with pytest.raises(DefectkitError, match="needs artifact 'anomaly_maps'"):
        run_recipe_dict(recipe(tiny, steps), tmp_path / "run")
