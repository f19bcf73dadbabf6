"""The generator: the generated-images layout, the EMA weights, the classes it knows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from defectkit.errors import DefectkitError
from defectkit.generated import read_generated, read_metadata
from defectkit.testing import run_recipe_dict
from defectkit_text2image.model import load_model
from defectkit_text2image.sampling import generate
from defectkit_text2image.tests.helpers import recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return run_recipe_dict(recipe(generate={}), tmp_path_factory.mktemp("t2i") / "run")


def test_the_generator_writes_the_generated_images_layout(trained):
    manifest = json.loads((trained / "02_generate" / "manifest.json").read_text())
    root = trained / manifest["artifacts"]["generated_images"]
    samples = read_generated(root)
    assert [s.defect_type for s in samples] == ["patches"] * 3 + ["scratches"] * 3
    assert (root / "contact_sheet.png").is_file()
    first = read_metadata(root)[0]
    assert first["prompt"] == "a photo of patches defect on a steel surface"
    assert first["weights"] == "ema" and first["guidance"] == 3.0 and first["object_class"] == "steel"
    assert Image.open(samples[0].image_path).size == (16, 16)


def test_generated_images_come_from_the_ema_weights(trained):
    root = trained / "02_generate" / "generated"
    records = read_metadata(root)
    model_dir = trained / "01_train" / "model"
    prompts, seeds = [r["prompt"] for r in records], [r["seed"] for r in records]
    written = np.stack([np.asarray(Image.open(root / r["file"]).convert("RGB")) for r in records])
    for weights, same in (("ema", True), ("raw", False)):
        again = generate(load_model(model_dir, weights), prompts, seeds, steps=3, guidance=3.0)
        assert np.array_equal(again, written) is same, weights


def test_an_unknown_class_names_the_known_ones(trained, tmp_path):
    options = {"model": str(trained / "01_train" / "model"), "classes": ["crazing"]}
    bad = recipe(generate=options)
    bad["steps"] = bad["steps"][1:]
    with pytest.raises(
        DefectkitError, match=r"classes \['crazing'\] were not trained; the model knows patches, scratches"
    ):
        run_recipe_dict(bad, tmp_path / "run")
