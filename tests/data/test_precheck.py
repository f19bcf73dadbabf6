"""A truncated image stops the run before the first step, not after training (issue 20, item 6)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from defectkit.data import precheck
from defectkit.errors import DataError
from defectkit.testing import run_recipe_dict


def _truncate_a_test_image(root: Path) -> Path:
    victim = sorted((root / "carpet" / "test" / "good").glob("*.png"))[-1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # the header stays readable: opening the dataset passes
    return victim


def _recipe(root: Path) -> dict:
    return {
        "version": 1,
        "name": "precheck",
        "device": "cpu",
        "data": {"format": "mvtec", "root": str(root)},
        "steps": [
            {"train": {"use": "patch_knn", "with": {"weights": None, "image_size": 64}}},
            {"detect": {"use": "patch_knn", "with": {"overlays": 0}}},
        ],
    }


def test_a_truncated_test_image_stops_the_run_before_training(tiny_mvtec, tmp_path):
    root = Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec"))
    victim = _truncate_a_test_image(root)
    with pytest.raises(DataError, match=rf"^{victim}: cannot be decoded .*before the first step; nothing was trained"):
        run_recipe_dict(_recipe(root), tmp_path / "run")
    assert not (tmp_path / "run" / "01_train").exists()


def test_large_datasets_are_checked_from_headers_only(tiny_mvtec, tmp_path, monkeypatch):
    root = Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec"))
    _truncate_a_test_image(root)
    monkeypatch.setattr(precheck, "FULL_DECODE_LIMIT", 3)
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match="cannot be decoded"):  # found later, by the detect step
        run_recipe_dict(_recipe(root), run_dir)
    assert (run_dir / "01_train" / "manifest.json").exists()
    assert "checked from their headers only (more than 3" in (run_dir / "run.log").read_text()
