"""Deterministic splits, the resized-image cache, and the `defectkit data` commands."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from defectkit.data.cache import ResizedImageCache
from defectkit.data.configs import SyntheticConfig
from defectkit.data.splits import apply_split
from defectkit.data.synthetic import open_synthetic, write_dataset
from defectkit.recipe import SplitSpec


def dataset():
    return open_synthetic(SyntheticConfig(kind="mvtec", category="carpet", size=32, n_train=10, n_test=6))


def test_val_split_is_deterministic_by_seed_and_disjoint():
    data, spec = dataset(), SplitSpec(val_fraction=0.3)
    train, val = apply_split(data, "train", spec, 1), apply_split(data, "val", spec, 1)
    assert len(train) == 7 and len(val) == 3
    assert not {s.id for s in train} & {s.id for s in val}
    assert [s.id for s in apply_split(data, "val", spec, 1)] == [s.id for s in val]
    assert [s.id for s in apply_split(data, "val", SplitSpec(val_fraction=0.3, seed=9), 1)] != [s.id for s in val]


def test_generation_protocol_first_third_by_name_trains():
    data = dataset()
    gen_train = apply_split(data, "gen_train", SplitSpec(protocol="generation"), 0)
    gen_eval = apply_split(data, "gen_eval", SplitSpec(protocol="generation"), 0)
    assert {s.defect_type for s in gen_train} == {"hole", "cut", "color", "thread", "metal_contamination"}
    hole_train = [s.id for s in gen_train if s.defect_type == "hole"]
    assert hole_train == ["carpet/test/hole/000.png", "carpet/test/hole/001.png"]
    assert len(gen_train) + len(gen_eval) == 30 and not {s.id for s in gen_train} & {s.id for s in gen_eval}


def test_cache_reuses_resized_pixels_in_memory_and_on_disk(tmp_path):
    samples = dataset().samples("test")[:4]
    cache = ResizedImageCache(16, tmp_path / "cache")
    first = [cache.image(s) for s in samples]
    assert cache.misses == 4 and first[0].shape == (16, 16, 3)
    again = [cache.image(s) for s in samples]
    assert cache.hits == 4 and all(a is b for a, b in zip(first, again, strict=True))
    warm = ResizedImageCache(16, tmp_path / "cache")
    assert np.array_equal(warm.image(samples[1]), first[1]) and warm.hits == 1
    mask = cache.mask(samples[-1])
    assert mask.dtype == bool and mask.shape == (16, 16)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "defectkit", *args], capture_output=True, text=True, timeout=300)


def test_data_synth_then_check(tmp_path):
    out = tmp_path / "neu"
    result = run_cli("data", "synth", "--kind", "neu", str(out), "--size", "48", "--n-train", "2", "--n-test", "1")
    assert result.returncode == 0, result.stderr
    assert (out / "contact_sheet.png").exists() and len(list((out / "IMAGES").iterdir())) == 18
    result = run_cli("data", "check", str(out), "--format", "neu-det")
    assert result.returncode == 0, result.stdout
    assert "18 images" in result.stdout and "no problems found" in result.stdout
    again = run_cli("data", "synth", "--kind", "neu", str(out))
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr and "Traceback" not in again.stderr


def test_data_check_lists_every_problem_and_exits_1(tmp_path):
    root = write_dataset("mvtec", tmp_path / "m", size=32, n_train=2, n_test=2, categories=["carpet"])
    (root / "carpet/ground_truth/hole/000_mask.png").unlink()
    (root / "carpet/test/empty_class").mkdir()
    result = run_cli("data", "check", str(root), "--format", "mvtec", "--category", "carpet")
    assert result.returncode == 1
    assert "2 problem(s)" in result.stdout and "000_mask.png" in result.stdout and "empty_class" in result.stdout
    missing = run_cli("data", "check", str(tmp_path / "nothing"), "--format", "mvtec")
    assert missing.returncode == 2 and "data.root does not exist" in missing.stderr


def test_generation_protocol_keeps_generator_images_out_of_test():
    data, spec = dataset(), SplitSpec(protocol="generation")
    gen_train = {s.id for s in apply_split(data, "gen_train", spec, 0)}
    test = {s.id for s in apply_split(data, "test", spec, 0)}
    assert gen_train and not gen_train & test
    assert len(test) == len(data.samples("test")) - len(gen_train)
    assert len(apply_split(data, "test", SplitSpec(), 0)) == len(data.samples("test")), "standard protocol: all"
