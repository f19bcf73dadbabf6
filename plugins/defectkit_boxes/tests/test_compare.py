"""box_compare: the loop for boxes, with a stand-in generator that writes images with masks."""

import json

import numpy as np
import pytest

from defectkit import Component, hookimpl
from defectkit.errors import DataError
from defectkit.generated import GeneratedWriter
from defectkit.testing import run_recipe_dict
from defectkit_boxes.compare import mask_boxes

DATA = {"format": "synthetic", "with": {"kind": "neu", "size": 64, "n_train": 6, "n_test": 3}}


class SyntheticGenerator:
    """Writes freshly rendered NEU-like images (seeds the dataset does not use) with their exact masks; with
    ``masks: false`` it writes none, as text2image_scratch does."""

    def __init__(self, config=None, masks: bool = True) -> None:
        self.masks = masks

    def generate(self, ctx) -> None:
        from PIL import Image

        from defectkit.data.procedural import render

        with GeneratedWriter(ctx.step_dir / "generated", object_class="steel") as out:
            for defect in ("patches", "pitted_surface"):
                for seed in range(4):
                    rendered = render("steel", defect, 64, 10_000 + seed)
                    out.add(
                        Image.fromarray(rendered.image),
                        defect,
                        {"seed": seed},
                        mask=rendered.mask if self.masks else None,
                    )
        ctx.add_artifact("generated_images", out.root)


def unmasked(config=None):
    return SyntheticGenerator(masks=False)


class _Plugin:
    @hookimpl
    def defectkit_generators(self):
        return [
            Component(kind="generator", name="synthetic_masks", factory=f"{__name__}:SyntheticGenerator"),
            Component(kind="generator", name="synthetic_no_masks", factory=f"{__name__}:unmasked"),
        ]


COMPARE = {
    "model": "fcos_small",
    "small": {"channels": [16, 32, 48, 64], "head_channels": 32},
    "image_size": 64,
    "steps": 12,
    "batch_size": 8,
    "lr": 0.003,
    "warmup_steps": 3,
    "seeds": [0, 1],
    "real_per_class": 3,
    "cpu_threads": 1,
}


def recipe(generator):
    steps = [{"generate": {"use": generator}}, {"train": {"use": "box_compare", "with": COMPARE}}]
    return {"version": 1, "name": "box_compare", "seed": 0, "device": "cpu", "data": DATA, "steps": steps}


def test_box_compare_reports_the_paired_map50_gain(register_plugin, tmp_path):
    register_plugin(_Plugin(), "stand-in-generators")
    run_dir = run_recipe_dict(recipe("synthetic_masks"), tmp_path / "run")
    figures = json.loads((run_dir / "metrics.json").read_text())["train"]
    print("box_compare, 12 steps, two seeds:", figures)
    assert (figures["real_train_images"], figures["generated_images"], figures["eval_images"]) == (18, 8, 18)
    runs = json.loads((run_dir / "02_train/comparison.json").read_text())["runs"]
    assert [(r["seed"], r["arm"], r["train_images"]) for r in runs] == [
        (0, "real", 18),
        (0, "augmented", 26),
        (1, "real", 18),
        (1, "augmented", 26),
    ]
    gains = [runs[1]["map50"] - runs[0]["map50"], runs[3]["map50"] - runs[2]["map50"]]
    assert figures["gain/map50_mean"] == pytest.approx(np.mean(gains))
    assert figures["gain/map50_ci95_low"] <= figures["gain/map50_mean"] <= figures["gain/map50_ci95_high"]
    assert (run_dir / "02_train/comparison.png").is_file()


def test_generated_images_without_masks_are_refused(register_plugin, tmp_path):
    register_plugin(_Plugin(), "stand-in-generators")
    with pytest.raises(DataError, match="generated images have no mask.*no boxes"):
        run_recipe_dict(recipe("synthetic_no_masks"), tmp_path / "run")


def test_mask_regions_become_boxes():
    mask = np.zeros((10, 12), bool)
    mask[1:3, 2:5] = True  # 6 pixels
    mask[6:9, 9:10] = True  # 3 pixels
    mask[7, 10] = True  # touches the previous one diagonally: one 8-connected region of 4 pixels
    boxes = mask_boxes(mask, "patches", min_pixels=4)
    assert [(b.x0, b.y0, b.x1, b.y1, b.label) for b in boxes] == [(2, 1, 5, 3, "patches"), (9, 6, 11, 9, "patches")]
    assert len(mask_boxes(mask, "patches", min_pixels=5)) == 1
