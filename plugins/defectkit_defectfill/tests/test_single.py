"""Seed 001's inference.py as a command, and mask-guided latent blending during sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from defectkit.cli import main
from defectkit.testing import run_recipe_dict
from defectkit_defectfill.tests.helpers import recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("defectfill") / "run"
    return run_recipe_dict(recipe(with_generate=False), out)


def test_one_image_from_the_command_line_changes_only_the_masked_pixels(trained, tmp_path, capsys):
    good = Image.fromarray(np.full((48, 48, 3), 120, np.uint8))
    good.save(tmp_path / "good.png")
    mask = np.zeros((48, 48), np.uint8)
    mask[16:32, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    defect = json.loads((trained / "01_train" / "adapter" / "adapter.json").read_text())["classes"][0]
    out = tmp_path / "filled.png"
    with pytest.raises(SystemExit) as ended:
        main(["defectfill", "generate", str(trained), "--image", str(tmp_path / "good.png"), "--mask",
              str(tmp_path / "mask.png"), "--defect", defect, "--out", str(out), "--steps", "2", "--candidates", "1",
              "--latent-blending", "--save-attention"])
    assert ended.value.code == 0, capsys.readouterr().err
    attended = out.with_name(f"filled_attention_{defect}.png")
    assert np.asarray(Image.open(attended)).shape == (48, 48)
    filled = np.asarray(Image.open(out).convert("RGB"))
    outside = mask == 0
    assert np.array_equal(filled[outside], np.asarray(good)[outside])  # bit-exact outside the mask
    assert not np.array_equal(filled[~outside], np.asarray(good)[~outside])
    assert f"wrote {out}\nwrote {attended}" in capsys.readouterr().out
    # mistakes are one line: an unknown type, an empty mask
    with pytest.raises(SystemExit) as ended:
        main(["defectfill", "generate", str(trained), "--image", str(tmp_path / "good.png"), "--mask",
              str(tmp_path / "mask.png"), "--defect", "no_such_type"])
    assert ended.value.code == 2 and "this run's adapter fills" in capsys.readouterr().err
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(SystemExit) as ended:
        main(["defectfill", "generate", str(trained), "--image", str(tmp_path / "good.png"), "--mask",
              str(tmp_path / "empty.png"), "--defect", defect])
    assert ended.value.code == 2 and "the mask is empty" in capsys.readouterr().err


def test_latent_blending_puts_the_noised_good_latents_back_outside_the_mask(trained, monkeypatch):
    import torch

    from defectkit_defectfill import generate as module
    from defectkit_defectfill.config import DefectFillGenerateConfig
    from defectkit_defectfill.generate import DefectFillGenerator

    seen = []
    original = module.LatentBlend.__call__

    def spy(self, pipe, index, timestep, kwargs):
        before = kwargs["latents"].clone()
        result = original(self, pipe, index, timestep, kwargs)
        seen.append((before, result["latents"].clone(), self.outside.clone(), index, len(pipe.scheduler.timesteps)))
        return result

    monkeypatch.setattr(module.LatentBlend, "__call__", spy)
    generator = DefectFillGenerator(DefectFillGenerateConfig(steps=3, candidates=1, latent_blending=True))
    loaded = generator.load(trained / "01_train" / "adapter", "cpu")
    image = Image.fromarray(np.full((48, 48, 3), 120, np.uint8))
    mask = np.zeros((48, 48), bool)
    mask[16:32, 16:32] = True
    defect = sorted(loaded.tokens)[0]
    generator.fill(loaded, image, mask, generator.prompt(loaded, [defect], "carpet"), seed=0)
    steps = seen[0][-1]  # the scheduler's own count (PNDM adds warm-up steps to the 3 asked for)
    assert steps >= 3 and [entry[3] for entry in seen] == list(range(steps))  # once per denoising step
    before, after, outside, *_ = seen[0]
    inside = outside == 0
    assert torch.equal(after * inside, before * inside)  # the defect's latents are the model's
    assert not torch.equal(after * outside, before * outside)  # the known region was replaced
    assert 0 < float(outside.mean()) < 1
    final_before, final_after, *_ = seen[-1]
    assert not torch.equal(final_after, final_before)
