"""Every metric component meets the plugin contract and is listed without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from defectkit.testing import check_component, check_plugin_light

EXPECTED = {
    "detection",
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1max",
    "pixel_aupro",
    "fid",
    "kid",
    "lpips",
    "ic_lpips",
    "clip_score",
    "ssim",
    "edge_ssim",
    "lbp",
    "inception_score",
    "classification",
    "segmentation",
}


def test_every_metric_is_registered(defectkit_registry):
    assert EXPECTED <= set(defectkit_registry.names("metric"))
    assert defectkit_registry.plugins["metrics"].status == "ok"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_component_contract(defectkit_registry, name):
    component = defectkit_registry.get("metric", name)
    config = check_component(component)
    assert config is not None
    # every option is documented for `defectkit plugins` and the docs
    for field_name, field in type(config).model_fields.items():
        assert field.description, f"{name}.{field_name} has no description"
    factory = component.load_factory()
    assert callable(getattr(factory(config), "evaluate", None))


def test_unknown_option_is_rejected(defectkit_registry):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        check_component(defectkit_registry.get("metric", "kid"), {"subset": 10})


def test_hooks_module_is_light():
    check_plugin_light("defectkit_metrics.hooks")


def test_plugins_listing_shows_metrics_and_eval_maps_help():
    listing = subprocess.run(
        [sys.executable, "-m", "defectkit", "plugins", "--json"], capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    metrics = next(p for p in json.loads(listing.stdout) if p["name"] == "metrics")
    assert EXPECTED <= set(metrics["components"]["metric"])
    help_text = subprocess.run(
        [sys.executable, "-m", "defectkit", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert "eval-maps" in help_text
