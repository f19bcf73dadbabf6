"""Images of every bit depth and mode decode at their real brightness, not clipped (issue 20, item 1)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from defectkit.data.check import check_dataset
from defectkit.data.pixels import decode_image
from defectkit.data.sample import read_image
from defectkit.errors import DataError

# an 8-bit ramp: every grey level, so any clipping or mis-scaling shows
RAMP8 = np.arange(256, dtype=np.uint8).reshape(16, 16).repeat(2, axis=0).repeat(2, axis=1)
RGB8 = np.stack([RAMP8, RAMP8[::-1], RAMP8.T], axis=-1)


def _grey(path: Path) -> np.ndarray:
    return np.asarray(read_image(path))[..., 0].astype(int)


@pytest.mark.parametrize(
    ("name", "write", "pixel_format"),
    [
        ("grey16.png", lambda p: Image.fromarray(RAMP8.astype(np.uint16) * 257).save(p), "I;16 16-bit"),
        ("grey16.tif", lambda p: tifffile.imwrite(p, RAMP8.astype(np.uint16) * 257), "I;16 16-bit"),
        ("grey32.tif", lambda p: tifffile.imwrite(p, RAMP8.astype(np.uint32) * 16843009), "I 32-bit"),
        ("float.tif", lambda p: tifffile.imwrite(p, RAMP8.astype(np.float32) / 255), "F 32-bit"),
        ("palette.png", lambda p: Image.fromarray(RAMP8).convert("P").save(p), "P 8-bit"),
        ("grey8.png", lambda p: Image.fromarray(RAMP8).save(p), "L 8-bit"),
    ],
)
def test_greyscale_of_any_depth_reads_as_its_8_bit_copy(tmp_path, name, write, pixel_format):
    path = tmp_path / name
    write(path)
    decoded = decode_image(path)
    assert decoded.pixel_format == pixel_format
    assert decoded.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded.image)[..., 0], RAMP8)


def test_sixteen_bit_greyscale_is_not_clipped_to_white(tmp_path):
    # what Pillow's convert("RGB") did: every value over 255 became 255
    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((8, 8), 64 * 257, dtype=np.uint16)).save(path)
    assert set(np.unique(_grey(path))) == {64}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_rgb_reads_as_its_8_bit_copy(tmp_path, suffix):
    import cv2

    path = tmp_path / f"rgb16{suffix}"
    rgb16 = RGB8.astype(np.uint16) * 257
    if suffix == ".png":
        cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    else:
        tifffile.imwrite(path, rgb16, photometric="rgb")
    decoded = decode_image(path)
    assert decoded.pixel_format == "RGB 16-bit"
    np.testing.assert_array_equal(np.asarray(decoded.image), RGB8)


def test_rgba_and_cmyk_keep_their_colours(tmp_path):
    rgba = np.concatenate([RGB8, np.full(RAMP8.shape + (1,), 128, dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "rgba.png")), RGB8)
    Image.fromarray(RGB8).convert("CMYK").save(tmp_path / "cmyk.tif")
    assert decode_image(tmp_path / "cmyk.tif").pixel_format == "CMYK 8-bit"
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "cmyk.tif")), RGB8)


def test_float_tiff_uses_its_declared_range_and_refuses_an_unknown_one(tmp_path):
    path = tmp_path / "declared.tif"
    # SMinSampleValue (340) and SMaxSampleValue (341): the values span 0..1000
    tifffile.imwrite(
        path, RAMP8.astype(np.float32) * (1000 / 255), extratags=[(340, "f", 1, 0.0, True), (341, "f", 1, 1000.0, True)]
    )
    assert np.abs(_grey(path) - RAMP8).max() <= 1
    tifffile.imwrite(tmp_path / "undeclared.tif", RAMP8.astype(np.float32) * 4)
    with pytest.raises(DataError, match=r"undeclared\.tif: float pixels range from 0 to 1020, outside 0\.\.1"):
        read_image(tmp_path / "undeclared.tif")


def _to_16_bit(root: Path) -> int:
    """Rewrite every image of an MVTec tree (not the masks) as a 16-bit greyscale PNG; returns how many."""
    count = 0
    for path in sorted(root.glob("*/t*/*/*.png")):
        grey = np.asarray(Image.open(path).convert("L")).astype(np.uint16)
        Image.fromarray(grey * 257).save(path)
        count += 1
    return count


def _to_8_bit_grey(root: Path) -> None:
    for path in sorted(root.glob("*/t*/*/*.png")):
        Image.open(path).convert("L").save(path)


def test_data_check_lists_pixel_formats(tiny_mvtec, tmp_path):
    root = Path(shutil.copytree(tiny_mvtec, tmp_path / "sixteen"))
    converted = _to_16_bit(root)
    report = check_dataset("mvtec", str(root), None)
    assert report.pixel_formats["I;16 16-bit"] == converted
    assert not report.problems


def test_a_16_bit_dataset_scores_as_its_8_bit_copy(tiny_mvtec, tmp_path):
    from defectkit.testing import run_recipe_dict

    eight = Path(shutil.copytree(tiny_mvtec, tmp_path / "eight"))
    _to_8_bit_grey(eight)
    sixteen = Path(shutil.copytree(eight, tmp_path / "sixteen"))
    _to_16_bit(sixteen)
    scores = {}
    for name, root in (("eight", eight), ("sixteen", sixteen)):
        recipe = {
            "version": 1,
            "name": f"bits_{name}",
            "device": "cpu",
            "data": {"format": "mvtec", "root": str(root)},
            "steps": [{"detect": {"use": "patch_knn", "with": {"weights": None, "image_size": 64, "overlays": 0}}}],
        }
        run_dir = run_recipe_dict(recipe, tmp_path / f"run_{name}")
        with open(run_dir / "01_detect" / "scores.csv", newline="") as handle:
            scores[name] = {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert scores["eight"] and scores["sixteen"] == scores["eight"]
