"""The web UI's Generate tab driven against real tiny stable_diffusion runs (no fake generator)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from defectkit.testing import check_session, run_recipe_dict
from defectkit_diffusion.tests.test_generate import generate_step, recipe

pytest.importorskip("gradio")


def _tab(run_dir):
    from defectkit_serve.api import MODELS, GenerateTab, ServeOptions, find_servable

    MODELS.clear()
    servable = find_servable(run_dir)
    [entry] = servable.generators
    return GenerateTab(servable, ServeOptions(device="cpu")), entry


def test_generate_tab_draws_an_image_for_a_text_to_image_run(registered, tiny_models, tmp_path):
    # once the tab passed image= and mask= to every session, and stable_diffusion's refused them (TypeError)
    run_dir = run_recipe_dict(recipe([generate_step(tiny_models["sd15"], defect_types=["scratches"])]), tmp_path / "run")
    tab, entry = _tab(run_dir)
    control, inpaint, negative = tab.show_inputs(entry.step.id)  # the session's capabilities choose the inputs
    assert not control.visible and not inpaint.visible and negative.visible
    picture, info, _ = tab.generate(entry.step.id, "scratches", "", "", 3, None, 2, None, None)
    assert picture.size == (32, 32) and "scratches, seed 3" in info
    check_session(entry.generator.open_session(run_dir, entry.step.id, "cpu"), steps=2)
    good = Image.new("RGB", (32, 32), (90, 90, 90))
    stroke = np.zeros((32, 32, 4), np.uint8)
    stroke[8:20, 8:20, 3] = 255
    editor = {"background": good, "layers": [Image.fromarray(stroke, "RGBA")], "composite": good}
    import gradio as gr

    with pytest.raises(gr.Error, match="draws whole images from the prompt: a painted region is not used"):
        tab.generate(entry.step.id, "scratches", "", "", 3, None, 2, None, editor)


def test_generate_tab_inpaints_the_painted_region_for_an_inpainting_run(registered, tiny_models, tmp_path):
    data = {"format": "synthetic", "category": "carpet", "with": {"kind": "mvtec", "size": 64, "n_train": 1, "n_test": 1}}
    model = str(tiny_models["sd15_inpainting"])
    step = generate_step(
        model,
        backend={"use": "sd15_inpainting", "with": {"model": model, "dtype": "fp32"}},
        source_split="test",
        images_per_class=1,
    )
    run_dir = run_recipe_dict(recipe([step], data=data), tmp_path / "run")
    tab, entry = _tab(run_dir)
    control, inpaint, _ = tab.show_inputs(entry.step.id)
    assert inpaint.visible and inpaint.open and not control.visible
    label = sorted(entry.generator.open_session(run_dir, entry.step.id, "cpu").labels)[0]
    good = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    stroke = np.zeros((32, 32, 4), np.uint8)
    stroke[8:20, 8:20, 3] = 255
    editor = {"background": good, "layers": [Image.fromarray(stroke, "RGBA")], "composite": good}
    picture, info, _ = tab.generate(entry.step.id, label, "", "", 1, None, 2, None, editor)
    assert picture.size == (32, 32) and "inpainted in the painted region" in info
    import gradio as gr

    with pytest.raises(gr.Error, match="inpaints: give a good image and paint where the defect goes"):
        tab.generate(entry.step.id, label, "", "", 1, None, 2, None, None)
