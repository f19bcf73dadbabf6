"""The web UI in a real browser: upload an image, read the score, move the threshold, see the verdict change."""

import os
import shutil
import socket
from pathlib import Path

import pytest

from defectkit_serve.app import ServeOptions, build_app, find_servable, launch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keep_artifact(path: Path) -> None:
    """Copy a screenshot where CI collects test artifacts (env DEFECTKIT_TEST_ARTIFACTS)."""
    target = os.environ.get("DEFECTKIT_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / path.name)


@pytest.fixture
def served(patchknn_run):
    options = ServeOptions(device="cpu")
    servable = find_servable(patchknn_run)
    demo = build_app(servable, options)
    app, url, share_url = launch(demo, servable, options, port=free_port())
    assert url.startswith("http://127.0.0.1:") and share_url is None  # local only, no public link by default
    assert app.get_blocks().max_file_size == options.limits.max_bytes  # gradio refuses bigger uploads itself
    yield url
    demo.close()


def set_threshold(page, value: float) -> None:
    box = page.locator("#dk-threshold input[type=number]")
    box.fill(f"{value:.6f}")
    box.press("Enter")


def test_upload_score_threshold_verdict(served, page, carpet_images, tmp_path):
    page.goto(served)
    page.get_by_text("Image to inspect").first.wait_for()
    # the page answers before the detector has loaded; its load event then brings the slider's range and default
    page.locator("#dk-threshold").get_by_text("default ").wait_for(timeout=60_000)
    defect = next((carpet_images / "carpet" / "test").glob("[!g]*/000.png"))  # a defect type, not good/

    page.locator("#dk-upload input[type=file]").set_input_files(str(defect))
    card = page.locator("#dk-verdict [data-verdict]")
    card.wait_for(timeout=60_000)
    score = float(card.get_attribute("data-score"))
    assert score > 0
    assert page.locator("#dk-overlay img").count() == 1, "the heat-map overlay is shown"
    first = card.get_attribute("data-verdict")
    assert first in ("normal", "anomalous")
    assert f"{score:.4f}" in card.inner_text()

    # a threshold just above the score: normal; just below: anomalous. The score stays: no new model run.
    set_threshold(page, score * 1.05)
    page.locator('#dk-verdict [data-verdict="normal"]').wait_for(timeout=20_000)
    set_threshold(page, score * 0.95)
    page.locator('#dk-verdict [data-verdict="anomalous"]').wait_for(timeout=20_000)
    assert float(page.locator("#dk-verdict [data-verdict]").get_attribute("data-score")) == score
    assert "ANOMALOUS" in page.locator("#dk-verdict").inner_text()

    shot = tmp_path / "serve_inspect.png"
    page.screenshot(path=str(shot), full_page=True)
    keep_artifact(shot)
    print(f"screenshot: {shot}")

    # a file that is not an image: one clear message in the verdict's place
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.locator("#dk-upload button[aria-label='Clear']").first.click() if page.locator(
        "#dk-upload button[aria-label='Clear']"
    ).count() else None
    page.locator("#dk-upload input[type=file]").set_input_files(str(bad))
    error = page.locator('#dk-verdict [data-kind="error"]')
    error.wait_for(timeout=20_000)
    assert "notes.png: cannot be read as an image" in error.inner_text()

    # the Run tab: metrics and the report, served from the run directory
    page.get_by_role("tab", name="Run").click()
    page.locator("#dk-metrics").get_by_text("image_auroc").first.wait_for(timeout=10_000)
    report = page.locator("#dk-report a")
    response = page.request.get(served.rstrip("/") + "/" + report.get_attribute("href"))
    assert response.ok and "<html" in response.text().lower()
    shot = tmp_path / "serve_run_tab.png"
    page.screenshot(path=str(shot), full_page=True)
    keep_artifact(shot)


def test_generate_tab_in_the_browser(register_plugin, page, tmp_path):
    from defectkit.testing import run_recipe_dict
    from defectkit_serve.tests import fake_generator

    register_plugin(fake_generator, "fake-generators")
    recipe = {"version": 1, "name": "gen", "steps": [{"generate": {"use": "fake_paint", "with": {"size": 64}}}]}
    run_dir = run_recipe_dict(recipe, tmp_path / "run")
    options = ServeOptions(device="cpu")
    servable = find_servable(run_dir)
    demo = build_app(servable, options)
    _, url, _ = launch(demo, servable, options, port=free_port())
    try:
        page.goto(url)
        page.get_by_role("tab", name="Generate").click()  # no detect step: Generate is the first tab anyway
        page.locator("#dk-gen-label input").fill("stain")
        page.locator("#dk-gen-label input").press("Enter")
        page.locator("#dk-generate").click()
        page.locator("#dk-gen-out img").wait_for(timeout=30_000)
        page.get_by_text("fake_paint: stain, seed 0").wait_for(timeout=10_000)
        shot = tmp_path / "serve_generate.png"
        page.screenshot(path=str(shot), full_page=True)
        keep_artifact(shot)
    finally:
        demo.close()
