"""report.html: one self-contained page per run, checked in a real browser."""

from __future__ import annotations

import json

from fakes import FakePlugin, recipe

from defectkit.report import render_report
from defectkit.testing import run_recipe_dict


def _images(page, report):
    """(alt, loaded) for every <img> of the page, after it has loaded."""
    page.goto(report.resolve().as_uri())
    page.wait_for_load_state("load")
    return page.evaluate("() => [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")


def test_report_of_a_detection_run_loads_every_image_in_chromium(tmp_path, page):
    run_dir = run_recipe_dict(
        {
            "version": 1,
            "name": "report-check",
            "seed": 0,
            "device": "cpu",
            "data": {
                "format": "synthetic",
                "category": "carpet",
                "with": {"kind": "mvtec", "size": 64, "n_train": 8, "n_test": 2},
            },
            "steps": [
                {"train": {"use": "patch_knn", "with": {"weights": None, "image_size": 64}}},
                {"detect": {"use": "patch_knn"}},
                {"evaluate": {"use": ["detection"]}},
                {"report": {"with": {"title": "report check"}}},
            ],
        },
        tmp_path / "run",
    )
    images = _images(page, run_dir / "report.html")
    overlays = json.loads((run_dir / "02_detect" / "manifest.json").read_text())["figures"]
    assert overlays and len(images) >= len(overlays)
    assert all(loaded for _, loaded in images), [alt for alt, loaded in images if not loaded]
    text = page.inner_text("body")
    for heading in ("Recipe", "Metrics", "Steps", "Environment", "Resolved recipe"):
        assert heading in text
    assert "patch_knn" in text and "image_auroc" in text
    # the recipe summary shows each step's options
    assert "image_size: 64" in text


def test_training_curves_are_grouped_per_step(tmp_path, page, register_plugin):
    register_plugin(FakePlugin(), "fake")
    run_dir = run_recipe_dict(recipe(), tmp_path / "run")
    with open(run_dir / "scalars.jsonl", "a", encoding="utf-8") as scalars:  # a second curve of the same step
        for step in range(30):
            scalars.write(json.dumps({"tag": "train/lr", "step": step, "value": 1e-3 * (1 - step / 30)}) + "\n")
    render_report(run_dir)
    images = _images(page, run_dir / "report.html")
    curves = [alt for alt, _ in images if "train/loss" in alt]
    assert curves == ["train/loss, train/lr"], images
    assert all(loaded for _, loaded in images)


def test_long_options_are_whole_in_a_collapsible_block_and_inapplicable_ones_hidden(tmp_path, page):
    title = "a very long report title " * 12
    run_dir = run_recipe_dict(
        {
            "version": 1,
            "name": "options-check",
            "data": {"format": "synthetic", "category": "carpet", "with": {"kind": "mvtec", "size": 32, "n_train": 4, "n_test": 1}},
            "steps": [
                {"train": {"use": "decodiff", "with": {"latent": "pixel", "model_size": "XS", "steps": 1, "batch_size": 2,
                                                       "image_size": 32, "crop_size": 32, "warmup_steps": 0}}},
                {"report": {"with": {"title": title}}},
            ],
        },
        tmp_path / "run",
    )
    html_text = (run_dir / "report.html").read_text()
    assert "..." not in html_text.split("<h2>Metrics</h2>")[0]
    page.goto((run_dir / "report.html").resolve().as_uri())
    summary = page.locator("table").first
    assert "vae_id" not in summary.inner_text() and "latent_scale" not in summary.inner_text()
    assert "pixel_patch" in summary.inner_text()
    page.locator("details summary").last.click()  # the report step's long title, unfolded
    assert title.strip() in " ".join(summary.inner_text().split())
    # the resolved recipe further down still holds every option
    assert "vae_id" in html_text.split("<h2>Resolved recipe</h2>")[1]
