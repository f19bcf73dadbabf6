"""The segment plugin: the segmenter learns, copy-paste keeps mask and pixels in step, the loop's statistics."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from defectkit.plugins import get_registry
from defectkit.testing import check_component, check_plugin_light, run_recipe_dict
from defectkit_segment.compare import summarise
from defectkit_segment.copy_paste import alpha_of, foreground, paste

DATA = {
    "format": "synthetic",
    "category": "carpet",
    "with": {"kind": "mvtec", "size": 64, "n_train": 8, "n_test": 6},
    "split": {"protocol": "generation"},
}


def recipe(steps: list, data: dict = DATA) -> dict:
    return {"version": 1, "name": "t", "seed": 0, "device": "cpu", "data": data, "steps": steps}


def test_hooks_are_light_and_components_build():
    check_plugin_light("defectkit_segment.hooks")
    registry = get_registry()
    for kind, name in (
        ("trainer", "segmenter"),
        ("trainer", "segment_compare"),
        ("detector", "segmenter"),
        ("generator", "copy_paste"),
    ):
        check_component(registry.get(kind, name))


@pytest.mark.slow
def test_segmenter_learns_the_synthetic_defects_end_to_end(tmp_path):
    # 10 real defects (the generation protocol's third) and 8 good images; scored on the other 20 defects
    run = run_recipe_dict(
        recipe(
            [
                {"train": {"use": "segmenter", "with": {"steps": 120, "width": 8, "batch_size": 8}}},
                {"detect": {"use": "segmenter", "with": {"overlays": 2}}},
                {"evaluate": {"use": ["detection"]}},
            ]
        ),
        tmp_path / "run",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    figures = metrics["evaluate"]
    assert figures["pixel_auroc"] > 0.9, figures
    assert figures["pixel_ap"] > 0.4, figures
    detect = metrics["detect"]
    assert detect["dice"] > 0.3 and 0 < detect["threshold"] < 1, detect
    maps = sorted((run / "02_detect" / "anomaly_maps").rglob("*.npy"))
    first = np.load(maps[0])
    assert first.shape == (64, 64) and first.min() >= 0 and first.max() <= 1


def test_paste_without_feather_copies_the_defect_pixels_exactly():
    rng = np.random.default_rng(0)
    good = np.full((32, 32, 3), 100, np.uint8)
    patch = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    mask = np.zeros((6, 5), bool)
    mask[1:5, 1:4] = True
    image, placed = paste(good, patch, mask, None, feather=0.0, rng=rng)
    assert placed.sum() == mask.sum()
    assert (image[~placed] == 100).all()  # nothing changed outside the mask
    rows, cols = np.nonzero(placed)
    top, left = rows.min() - 1, cols.min() - 1
    assert (image[placed] == patch[mask]).all()  # and inside it, the defect's own pixels
    assert placed[top : top + 6, left : left + 5][mask].all()


def test_feathering_pastes_the_defect_whole_and_fades_out_in_a_ring_around_it():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    good = np.full((40, 40, 3), 50, np.uint8)
    patch = np.full((14, 14, 3), 150, np.uint8)  # the defect's surroundings in its source image
    patch[4:10, 4:10] = 250  # the defect
    mask = np.zeros((14, 14), bool)
    mask[4:10, 4:10] = True
    image, placed = paste(good, patch, mask, None, feather=3.0, rng=rng)
    assert placed.sum() == 36 and (image[placed] == 250).all()  # every defect pixel, unfaded
    changed = (image != good).any(-1)
    ring = changed & ~placed
    assert ring.any() and not (ring & (ndimage.distance_transform_edt(~placed) > 4)).any()
    ramp = image[ring][:, 0]
    assert ramp.min() < 100 < ramp.max() <= 150  # a fade from the surroundings into the good image: no seam
    assert alpha_of(placed, 3.0)[placed].min() == 1.0


def test_paste_on_an_object_stays_inside_its_foreground():
    rng = np.random.default_rng(2)
    good = np.zeros((48, 48, 3), np.uint8)
    yy, xx = np.mgrid[:48, :48]
    disc = (yy - 24) ** 2 + (xx - 24) ** 2 < 15**2
    good[disc] = 200
    allowed = foreground(good, 30.0)
    assert (allowed == disc).mean() > 0.98
    # a defect too large for the disc: it is clipped, never pasted on the background
    patch = np.full((36, 36, 3), 90, np.uint8)
    image, placed = paste(good, patch, np.ones((36, 36), bool), allowed, feather=2.0, rng=rng)
    assert placed.any() and not (placed & ~allowed).any()
    assert (image[~allowed] == 0).all()


def test_copy_paste_generator_on_an_object_category(tmp_path):
    from scipy import ndimage

    from defectkit.generated import read_generated, read_metadata

    data = {**DATA, "category": "bottle"}
    run = run_recipe_dict(
        recipe([{"generate": {"use": "copy_paste", "with": {"images_per_class": 3}}}], data), tmp_path / "r"
    )
    root = run / "01_generate" / "generated"
    from defectkit.data.synthetic import write_dataset

    # the same synthetic data on disk, to compare each pasted image with the good image it was pasted into

    goods_root = tmp_path / "d"
    write_dataset("mvtec", goods_root, size=64, n_train=8, n_test=6, seed=0, categories=["bottle"])
    records = read_metadata(root)
    samples = read_generated(root)
    assert len(samples) == 3 * 3 and all(s.mask_path is not None for s in samples)
    for record, sample in zip(records, samples, strict=True):
        good_path = next(goods_root.rglob(f"train/good/{os.path.basename(record['source'])}*"))
        from PIL import Image

        good = np.asarray(Image.open(good_path).convert("RGB"))
        image, mask = np.asarray(sample.load_image()), sample.load_mask()
        assert mask.any()
        assert not (mask & ~foreground(good, 30.0)).any()  # nothing pasted outside the bottle
        changed = (image != good).any(-1)
        assert changed[mask].mean() > 0.5  # the mask is where the defect went
        near = ndimage.distance_transform_edt(~mask) <= 3  # feather 2: the ring is at most 3 px wide
        assert not (changed & ~near).any() and not (changed & ~foreground(good, 30.0)).any()


def test_paired_gain_and_interval_match_a_hand_computation():
    seeds = [0, 1, 2]
    real = [0.5, 0.6, 0.7]
    other = [0.6, 0.8, 0.75]  # per-seed gains 0.10, 0.20, 0.05
    figures = ("pixel_auroc", "pixel_ap", "pixel_aupro", "image_auroc", "iou", "dice")
    results = [
        {"seed": s, "arm": arm, **{f: values[i] for f in figures}}
        for arm, values in (("real", real), ("real+gen", other))
        for i, s in enumerate(seeds)
    ]
    out = summarise(results, seeds, ["real", "real+gen"])
    # mean 0.35/3; sd sqrt(((-1/60)^2 + (5/60)^2 + (-4/60)^2) / 2) = 0.0763763; t(0.975, 2) = 4.3026527
    half = 4.3026527 * 0.0763763 / math.sqrt(3)
    assert out["gain/real+gen/pixel_ap"] == pytest.approx(0.1166667, abs=1e-6)
    low, high = out["gain/real+gen/pixel_ap_ci95"]
    assert (low, high) == (pytest.approx(0.1166667 - half, abs=1e-5), pytest.approx(0.1166667 + half, abs=1e-5))
    assert low == pytest.approx(-0.073064, abs=1e-5)
    assert out["real/pixel_ap"] == pytest.approx(0.6) and out["real/pixel_ap_std"] == pytest.approx(0.1)
    assert "gain/real/pixel_ap" not in out


@pytest.mark.slow
def test_compare_runs_every_arm_scores_the_reference_and_resumes(tmp_path):
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    steps = [
        {"generate": {"id": "copy_paste", "use": "copy_paste", "with": {"images_per_class": 4}}},
        {"generate": {"id": "small_paste", "use": "copy_paste", "with": {"images_per_class": 2, "scale": [0.5, 0.6]}}},
        {"train": {"id": "decoy", "use": "segmenter", "with": {"steps": 5, "width": 4}}},
        {"detect": {"use": "segmenter"}},
        {"train": {"id": "compare", "use": "segment_compare", "with": {"steps": 6, "width": 4, "seeds": [0, 1]}}},
    ]
    validated = validate_recipe(recipe(steps), get_registry(), source="<test>")
    run = run_recipe(validated, out=tmp_path / "run")
    step = run / "05_compare"
    metrics = json.loads((run / "metrics.json").read_text())["compare"]
    # one arm per earlier generate step (ctx.artifacts), not only the latest
    assert metrics["real+copy_paste/generated_pairs"] == 20 and metrics["real+small_paste/generated_pairs"] == 10
    for arm in ("real", "real+copy_paste", "real+small_paste"):
        for key in ("pixel_auroc", "pixel_ap", "pixel_aupro", "image_auroc"):
            assert 0 <= metrics[f"{arm}/{key}"] <= 1
    for key in ("pixel_ap", "pixel_aupro"):
        low, high = metrics[f"gain/real+copy_paste/{key}_ci95"]
        assert low <= metrics[f"gain/real+copy_paste/{key}"] <= high
    assert "reference/pixel_ap" in metrics  # the detect step's maps, scored on the same images
    assert (step / "comparison.png").stat().st_size > 10_000
    # an interrupted run: one (seed, arm) missing, the step unfinished; resume redoes only that one
    kept = step / "results" / "seed0_real.json"
    before = kept.read_text()
    (step / "results" / "seed1_real+copy_paste.json").unlink()
    (step / "manifest.json").unlink()
    os.utime(kept, (0, 0))
    run_recipe(validated, out=run, resume=True)
    assert kept.stat().st_mtime == 0 and kept.read_text() == before
    assert (step / "results" / "seed1_real+copy_paste.json").is_file()


def test_the_shipped_recipe_takes_an_mvtec_folder_by_set(tiny_mvtec):
    from pathlib import Path

    import yaml

    from defectkit.recipe import validate_recipe

    path = Path(__file__).resolve().parents[3] / "recipes" / "augment_segment.yaml"
    overrides = ("data.format=mvtec", f"data.root={tiny_mvtec}", "data.category=carpet")
    validated = validate_recipe(yaml.safe_load(path.read_text()), get_registry(), source=path, overrides=overrides)
    assert validated.recipe.data.format == "mvtec" and validated.recipe.data.split.protocol == "generation"
    compare = validated.steps[-2]
    assert compare.id == "compare" and [s.id for s in validated.steps[:3]] == [
        "copy_paste",
        "defectfill_lora",
        "defectfill",
    ]


def test_user_mistakes_are_one_line_errors(tmp_path):
    from PIL import Image

    from defectkit.errors import DataError, DefectkitError
    from defectkit.generated import GeneratedWriter
    from defectkit_segment.model import build_encoder
    from defectkit_segment.train import generated_samples

    with GeneratedWriter(tmp_path / "gen") as out:
        out.add(Image.new("RGB", (8, 8)), "hole", {"seed": 0})  # an image without its mask
    with pytest.raises(DataError, match="images without masks"):
        generated_samples(tmp_path / "gen", None, "step x")
    with pytest.raises(DefectkitError, match="unknown encoder 'resnet9'"):
        build_encoder("resnet9", False, 8)
    with pytest.raises(DefectkitError, match="no pretrained weights"):
        build_encoder("small", True, 8)
