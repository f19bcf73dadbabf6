"""Blending, low-fidelity selection and masks, without a diffusion model."""

import numpy as np
import pytest
import torch

from defectkit.errors import DataError
from defectkit_defectfill.config import DefectFillGenerateConfig, MaskConfig
from defectkit_defectfill.generate import blend, low_fidelity_index, mask_box
from defectkit_defectfill.masks import MaskSource, place_shape, random_shape
from defectkit_defectfill.tiny import LPIPS_FACTORY


def test_blend_is_bit_exact_outside_the_mask():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), dtype=bool)
    mask[5:20, 30:50] = True
    out = blend(original, generated, mask)
    assert out.dtype == np.uint8
    assert np.array_equal(out[~mask], original[~mask])
    assert np.array_equal(out[mask], generated[mask])
    with pytest.raises(ValueError, match="shapes differ"):
        blend(original, generated[:-1], mask)


def test_low_fidelity_selection_keeps_the_candidate_farthest_inside_the_mask():
    from defectkit_metrics.api import lpips_distance

    distance = lpips_distance(LPIPS_FACTORY, torch.device("cpu"))
    rng = np.random.default_rng(1)
    original = rng.integers(90, 160, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:40, 24:44] = True
    same = original.copy()
    mild = blend(original, np.clip(original.astype(int) + 25, 0, 255).astype(np.uint8), mask)
    strong = blend(original, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), mask)
    chosen, values = low_fidelity_index(original, [mild, strong, same], mask, distance, 32)
    assert chosen == 1
    assert values[2] == pytest.approx(0.0, abs=1e-7)  # the unchanged candidate is at distance 0
    assert values[1] > values[0] > values[2]


def test_mask_box_grows_and_clips():
    mask = np.zeros((20, 30), dtype=bool)
    mask[0:4, 10:20] = True
    left, top, right, bottom = mask_box(mask, margin=0.5)
    assert (left, top, right, bottom) == (5, 0, 25, 6)


def test_place_shape_keeps_the_shape_and_stays_inside():
    shape = np.zeros((40, 40), dtype=bool)
    shape[10:13, 5:25] = True  # a 3 x 20 scratch
    for seed in range(8):
        placed = place_shape(shape, (32, 48), np.random.default_rng(seed))
        assert placed.shape == (48, 32) and placed.sum() == 60
    smaller = place_shape(shape, (64, 64), np.random.default_rng(0), scale=0.5)
    assert 5 <= smaller.sum() <= 20


def test_random_masks_are_a_function_of_the_seed():
    source = MaskSource(MaskConfig(source="random", size=(0.2, 0.4)))
    a = source.draw(["hole"], (40, 30), 0, np.random.default_rng(5))
    b = source.draw(["hole"], (40, 30), 0, np.random.default_rng(5))
    assert a.shape == (30, 40) and a.any() and np.array_equal(a, b)
    assert random_shape((40, 30), (0.2, 0.4), np.random.default_rng(6)).any()


def test_mask_sources_say_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="no mask of hole"):
        MaskSource(MaskConfig(source="real"), []).check(["hole"])
    with pytest.raises(DataError, match="is not a folder"):
        MaskSource(MaskConfig(source="folder", folder=str(tmp_path / "none")))
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="holds no mask image"):
        MaskSource(MaskConfig(source="folder", folder=str(tmp_path / "masks")))


def test_generate_options_are_checked():
    with pytest.raises(ValueError, match="two or more different"):
        DefectFillGenerateConfig(combine=[["hole"]])
    with pytest.raises(ValueError, match=r"\{tokens\}"):
        DefectFillGenerateConfig(prompt="a carpet")
    with pytest.raises(ValueError, match="inpainting backend"):
        DefectFillGenerateConfig(backend="sd15")


def test_folder_masks_are_taken_in_name_order_and_resized(tmp_path):
    from PIL import Image

    folder = tmp_path / "masks"
    folder.mkdir()
    first = np.zeros((20, 20), dtype=np.uint8)
    first[0:10, 0:10] = 255
    Image.fromarray(first).save(folder / "a.png")
    Image.fromarray(255 - first).save(folder / "b.png")
    source = MaskSource(MaskConfig(source="folder", folder=str(folder)))
    a = source.draw(["hole"], (40, 40), 0, np.random.default_rng(0))
    b = source.draw(["hole"], (40, 40), 1, np.random.default_rng(0))
    assert a.shape == (40, 40) and a[:20, :20].all() and not a[20:, :].any()
    assert np.array_equal(b, ~a)
    assert np.array_equal(source.draw(["hole"], (40, 40), 2, np.random.default_rng(0)), a)  # cycles
