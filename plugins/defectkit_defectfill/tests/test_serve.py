"""A DefectFill run in ``defectkit serve``'s Generate tab: a good image plus a drawn mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from defectkit.testing import check_session, run_recipe_dict
from defectkit_defectfill.tests.helpers import recipe

pytest.importorskip("gradio")


def test_generate_tab_paints_a_defect_inside_the_drawn_mask_only(registered, tmp_path, monkeypatch):
    from defectkit_serve.api import MODELS, GenerateTab, ServeOptions, find_servable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_dir = run_recipe_dict(recipe(), tmp_path / "run")
    servable = find_servable(run_dir)
    [entry] = servable.generators
    MODELS.clear()
    tab = GenerateTab(servable, ServeOptions(device="cpu"))
    control, inpaint, negative = tab.show_inputs(entry.step.id)  # from the session's capabilities, not its name
    assert inpaint.visible and inpaint.open and not control.visible and negative.visible
    good = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8))
    layer = np.zeros((48, 48, 4), dtype=np.uint8)
    layer[16:32, 10:30, 3] = 255  # the stroke the user drew
    editor = {"background": good, "layers": [Image.fromarray(layer, "RGBA")], "composite": good}
    label = sorted(entry.generator.open_session(run_dir, entry.step.id, "cpu").labels)[0]
    picture, info, _ = tab.generate(entry.step.id, label, "", "", 1, None, None, None, editor)
    out, before = np.asarray(picture.convert("RGB").resize((48, 48))), np.asarray(good)
    inside = layer[..., 3] > 0
    assert np.array_equal(out[~inside], before[~inside]), "pixels outside the drawn mask are kept exactly"
    assert not np.array_equal(out[inside], before[inside]), "the masked region is repainted"
    assert "inpainted in the painted region" in info
    session = MODELS.get((str(servable.run.run_dir), entry.step.id, "cpu"), lambda: None)
    check_session(session, label, image=good, mask=Image.fromarray(inside.astype(np.uint8) * 255, "L"), seed=2)
    MODELS.clear()
