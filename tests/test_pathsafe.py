"""Names from data never become paths outside their folders; symlinks never lead out of a dataset (issue 20, item 2)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectkit.anomaly_maps import map_names, save_map
from defectkit.data.configs import FolderConfig, MVTecConfig, VisAConfig
from defectkit.data.formats import open_folder, open_mvtec, open_visa
from defectkit.data.sample import Sample
from defectkit.errors import DataError, RunError
from defectkit.pathsafe import check_name, safe_join

BAD_NAMES = ["../../../../tmp/x", "/tmp/y", "..", "a/b", "a\\b", "tab\tname", "new\nline", "", "C:evil"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_name_refuses_what_would_become_a_path(name):
    with pytest.raises(DataError, match=r"^labels.txt:3: label .* cannot be used as a file or folder name"):
        check_name(name, "labels.txt:3", "label")


@pytest.mark.parametrize("name", ["scratch", "rolled-in_scale", "metal contamination", "000.png", "Kratzer_ä"])
def test_check_name_keeps_real_names(name):
    assert check_name(name, "here") == name


def test_safe_join_refuses_a_path_outside_its_base(tmp_path):
    assert safe_join(tmp_path, "a", "b.npy") == tmp_path / "a" / "b.npy"
    for parts in (("..", "x.npy"), ("/tmp/y.npy",), ("a/../../x.npy",)):
        with pytest.raises(RunError, match="lies outside"):
            safe_join(tmp_path / "maps", *parts)
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "link").symlink_to(tmp_path.parent)
    with pytest.raises(RunError, match="lies outside"):
        safe_join(tmp_path / "maps", "link", "x.npy")


def test_map_names_and_save_map_refuse_traversal(tmp_path):
    bad = Sample(id="test/a.png", split="test", label=1, defect_type="../../escape", image_path=tmp_path / "a.png")
    with pytest.raises(DataError, match=r"patch_knn: test image .*a.png: defect type '../../escape'"):
        map_names([bad], "patch_knn")
    with pytest.raises(RunError):
        save_map(tmp_path / "maps", "../../escape/a", np.zeros((2, 2)))
    assert not (tmp_path.parent / "escape").exists()


def _folder(root: Path, val_line: str) -> Path:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(root / "images" / f"n{i}.png")
    (root / "train_labels.txt").write_text("".join(f"n{i}.png,0\n" for i in range(4)))
    (root / "val_labels.txt").write_text(f"n4.png,0\n{val_line}\n")
    return root


@pytest.mark.parametrize("line", ["n5.png,../../../../tmp/x", "n5.png,/tmp/y", "../images/n5.png,1", "n5.png,a\x07b"])
def test_folder_labels_that_would_be_paths_are_one_line_naming_file_and_line(tmp_path, line):
    root = _folder(tmp_path / "data", line)
    with pytest.raises(
        DataError, match=r"val_labels.txt:2: (label|file name) .* cannot be used as a file or folder name"
    ):
        open_folder(FolderConfig(root=str(root)))


def test_a_traversal_label_writes_nothing_outside_the_run_folder(tmp_path):
    from defectkit.testing import run_recipe_dict

    # from RUN/01_detect/anomaly_maps, three levels up is tmp_path: without the checks the map lands in tmp_path/escape
    root = _folder(tmp_path / "data", "n5.png,../../../escape")
    recipe = {
        "version": 1,
        "name": "traversal",
        "device": "cpu",
        "data": {"format": "folder", "root": str(root)},
        "steps": [{"detect": {"use": "patch_knn", "with": {"weights": None, "image_size": 32, "overlays": 0}}}],
    }
    with pytest.raises(DataError, match=r"val_labels.txt:2: label '../../../escape'"):
        run_recipe_dict(recipe, tmp_path / "run")
    assert not (tmp_path / "escape").exists()
    assert not list((tmp_path / "run").rglob("*.npy"))


@pytest.fixture
def mvtec_with_outside_link(tiny_mvtec, tmp_path) -> Path:
    root = Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec"))
    outside = tmp_path / "outside.png"
    victim = sorted((root / "carpet" / "test" / "good").glob("*.png"))[0]
    shutil.copy(victim, outside)
    victim.unlink()
    victim.symlink_to(outside)
    return root


def test_symlinks_leaving_the_dataset_are_refused_unless_allowed(mvtec_with_outside_link):
    root = mvtec_with_outside_link
    with pytest.raises(DataError, match=r"000.png: a symlink leads out of the dataset root .*follow_symlinks: true"):
        open_mvtec(MVTecConfig(root=str(root)))
    allowed = open_mvtec(MVTecConfig(root=str(root), follow_symlinks=True))
    assert any(s.image_path.is_symlink() for s in allowed.samples("test"))


def test_symlinks_inside_the_dataset_are_fine(tiny_mvtec, tmp_path):
    root = Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec"))
    images = sorted((root / "carpet" / "test" / "good").glob("*.png"))
    images[0].unlink()
    images[0].symlink_to(images[1])
    assert open_mvtec(MVTecConfig(root=str(root))).samples("test")


def test_visa_csv_paths_outside_the_root_are_refused_even_with_follow_symlinks(tmp_path):
    root = tmp_path / "visa"
    (root / "split_csv").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "outside.png")
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerow(["pcb1", "train", "normal", "../outside.png", ""])
    with pytest.raises(DataError, match=r"outside.png: lies outside the dataset root"):
        open_visa(VisAConfig(root=str(root), follow_symlinks=True))
