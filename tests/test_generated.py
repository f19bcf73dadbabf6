import json

import numpy as np
import pytest
from PIL import Image

from defectkit.errors import DataError
from defectkit.generated import CONTACT_SHEET, METADATA, GeneratedWriter, read_generated


def test_round_trip_with_masks(tmp_path):
    with GeneratedWriter(tmp_path / "gen", object_class="steel") as out:
        for seed in range(3):
            mask = np.zeros((16, 16), bool)
            mask[4:8, 4:8] = True
            out.add(Image.new("RGB", (16, 16), (seed * 40, 0, 0)), "scratches", {"seed": seed, "prompt": "a scratch"}, mask=mask)
        out.add(Image.new("RGB", (16, 16)), "good", {"seed": 9})
    samples = read_generated(tmp_path / "gen")
    assert [s.defect_type for s in samples] == ["scratches"] * 3 + ["good"]
    assert [s.label for s in samples] == [1, 1, 1, 0]
    assert samples[0].object_class == "steel" and samples[0].caption == "a scratch"
    assert samples[1].load_image().getpixel((0, 0)) == (40, 0, 0)
    assert samples[0].load_mask()[5, 5] and not samples[0].load_mask()[0, 0]
    assert (tmp_path / "gen" / CONTACT_SHEET).is_file()
    lines = [json.loads(x) for x in (tmp_path / "gen" / METADATA).read_text().splitlines()]
    assert lines[2]["seed"] == 2 and lines[2]["file"] == "images/scratches/scratches_00002.png"


def test_unfinished_folder_is_refused(tmp_path):
    out = GeneratedWriter(tmp_path / "gen")
    out.add(Image.new("RGB", (8, 8)), "crack", {"seed": 0})
    with pytest.raises(DataError, match="did not finish"):
        read_generated(tmp_path / "gen")


def test_missing_image_is_named(tmp_path):
    with GeneratedWriter(tmp_path / "gen") as out:
        path = out.add(Image.new("RGB", (8, 8)), "crack", {"seed": 0})
    path.unlink()
    with pytest.raises(DataError, match="crack_00000.png, which does not exist"):
        read_generated(tmp_path / "gen")


def test_bad_defect_type(tmp_path):
    with pytest.raises(DataError, match="cannot be used as a file or folder name"):
        GeneratedWriter(tmp_path).add(Image.new("RGB", (8, 8)), "../x")
