"""Every dataset format reads a small tree made here, and every kind of broken input gets one clear message."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectkit.data.check import check_dataset
from defectkit.data.configs import (
    CaptionsConfig,
    DefectFillConfig,
    FolderConfig,
    HFConfig,
    MVTecConfig,
    NEUDetConfig,
    SyntheticConfig,
    VisAConfig,
)
from defectkit.data.formats import open_captions, open_defectfill, open_folder, open_mvtec, open_neu_det, open_visa
from defectkit.data.hf import open_hf
from defectkit.data.synthetic import open_synthetic, write_dataset
from defectkit.errors import DataError


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory) -> Path:
    return write_dataset("mvtec", tmp_path_factory.mktemp("m") / "mvtec", size=48, n_train=4, n_test=2, categories=["carpet", "bottle"])


@pytest.fixture
def mvtec_copy(mvtec_root, tmp_path) -> Path:
    return Path(shutil.copytree(mvtec_root, tmp_path / "copy"))


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# -- mvtec ------------------------------------------------------------------------------


def test_mvtec_reads_splits_classes_and_masks(mvtec_root):
    data = open_mvtec(MVTecConfig(root=str(mvtec_root), category="carpet"))
    train, test = data.samples("train"), data.samples("test")
    assert len(train) == 4 and all(s.label == 0 and s.defect_type == "good" for s in train)
    assert {s.defect_type for s in test} == {"good", "hole", "cut", "color", "thread", "metal_contamination"}
    assert len(test) == 12
    defective = next(s for s in test if s.label == 1)
    assert defective.id == f"carpet/test/{defective.defect_type}/{defective.image_path.name}"
    mask = defective.load_mask()
    assert mask.dtype == bool and mask.shape == (48, 48) and mask.any()
    assert not next(s for s in test if s.label == 0).load_mask().any()
    assert len(open_mvtec(MVTecConfig(root=str(mvtec_root))).samples("train")) == 8, "no category: all of them"


def test_mvtec_missing_root_and_unknown_category(tmp_path, mvtec_root):
    with pytest.raises(DataError, match="data.root does not exist"):
        open_mvtec(MVTecConfig(root=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="no such category; did you mean 'carpet'"):
        open_mvtec(MVTecConfig(root=str(mvtec_root), category="carpt"))


def test_mvtec_empty_class(mvtec_copy):
    (mvtec_copy / "carpet" / "test" / "scratch").mkdir()
    with pytest.raises(DataError, match=r"test/scratch: defect class 'scratch' has no images"):
        open_mvtec(MVTecConfig(root=str(mvtec_copy), category="carpet"))


def test_mvtec_mask_problems(mvtec_copy):
    masks = sorted((mvtec_copy / "carpet" / "ground_truth" / "hole").glob("*.png"))
    save(masks[0], np.zeros((20, 20), np.uint8))
    with pytest.raises(DataError, match=r"000_mask.png: mask is 20x20 but its image 000.png is 48x48"):
        open_mvtec(MVTecConfig(root=str(mvtec_copy), category="carpet"))
    save(masks[0], np.arange(48 * 48, dtype=np.uint32).reshape(48, 48).astype(np.uint8))
    with pytest.raises(DataError, match=r"000_mask.png: mask is not binary \(256 grey levels"):
        open_mvtec(MVTecConfig(root=str(mvtec_copy), category="carpet"))
    masks[0].unlink()
    with pytest.raises(DataError, match=r"hole/000.png: defective image has no mask \(expected .*000_mask.png\)"):
        open_mvtec(MVTecConfig(root=str(mvtec_copy), category="carpet"))


def test_warn_mode_skips_and_reports_counts(mvtec_copy, caplog):
    (mvtec_copy / "carpet" / "ground_truth" / "hole" / "000_mask.png").unlink()
    (mvtec_copy / "carpet" / "ground_truth" / "cut" / "001_mask.png").unlink()
    with caplog.at_level(logging.WARNING, logger="defectkit.data"):
        data = open_mvtec(MVTecConfig(root=str(mvtec_copy), category="carpet", on_error="warn"))
    assert len(data.samples("test")) == 10
    assert "skipped 2 sample(s) (2 missing masks); kept 14" in caplog.text
    assert len(data.problems) == 2


def test_truncated_image_is_named_when_decoded_and_by_check(mvtec_copy):
    image = mvtec_copy / "carpet" / "train" / "good" / "001.png"
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2])
    data = open_mvtec(MVTecConfig(root=str(mvtec_copy), category="carpet"))
    sample = next(s for s in data.samples("train") if s.image_path == image)
    with pytest.raises(DataError, match=r"001.png: cannot be decoded"):
        sample.load_image()
    report = check_dataset("mvtec", str(mvtec_copy), "carpet")
    assert [k for k, _ in report.problems] == ["unreadable images or masks"]
    assert "001.png" in report.problems[0][1]


# -- visa ------------------------------------------------------------------------------------


def test_visa_raw_layout_with_split_csv(tmp_path):
    root = tmp_path / "visa"
    rng = np.random.default_rng(0)
    rows = ["object,split,label,image,mask"]
    for i in range(3):
        save(root / "pcb1/Data/Images/Normal" / f"{i:04d}.JPG", rng.integers(0, 255, (32, 32, 3), np.uint8))
        rows.append(f"pcb1,{'train' if i < 2 else 'test'},normal,pcb1/Data/Images/Normal/{i:04d}.JPG,")
    save(root / "pcb1/Data/Images/Anomaly/000.JPG", rng.integers(0, 255, (32, 32, 3), np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[4:9, 4:9] = 1  # VisA masks use 0/1 rather than 0/255
    save(root / "pcb1/Data/Masks/Anomaly/000.png", mask)
    rows.append("pcb1,test,anomaly,pcb1/Data/Images/Anomaly/000.JPG,pcb1/Data/Masks/Anomaly/000.png")
    (root / "split_csv").mkdir()
    (root / "split_csv/1cls.csv").write_text("\n".join(rows) + "\n")
    data = open_visa(VisAConfig(root=str(root)))
    assert len(data.samples("train")) == 2 and len(data.samples("test")) == 2
    defective = next(s for s in data.samples("test") if s.label)
    assert defective.load_mask().sum() == 25
    (root / "split_csv/1cls.csv").write_text("\n".join(rows + ["pcb1,test,normal,pcb1/Data/Images/Normal/9999.JPG,"]) + "\n")
    with pytest.raises(DataError, match=r"1cls.csv:6: names pcb1/Data/Images/Normal/9999.JPG, which does not exist"):
        open_visa(VisAConfig(root=str(root)))


def test_visa_converted_layout(tmp_path, mvtec_root):
    root = tmp_path / "visa_pytorch"
    shutil.copytree(mvtec_root / "bottle", root / "bottle")
    for mask in (root / "bottle" / "ground_truth").rglob("*_mask.png"):
        mask.rename(mask.with_name(mask.name.replace("_mask", "")))
    data = open_visa(VisAConfig(root=str(root), category="bottle"))
    assert sum(s.label for s in data.samples("test")) == 6


# -- neu-det -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def neu_root(tmp_path_factory) -> Path:
    return write_dataset("neu", tmp_path_factory.mktemp("n") / "NEU-DET", size=64, n_train=4, n_test=2)


def test_neu_det_reads_six_classes_boxes_and_coarse_masks(neu_root):
    data = open_neu_det(NEUDetConfig(root=str(neu_root), test_fraction=0.34))
    train, test = data.samples("train"), data.samples("test")
    assert len(train) + len(test) == 36 and len(test) == 12
    assert {s.defect_type for s in test} == {"crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"}
    sample = next(s for s in train if s.defect_type == "scratches")
    assert sample.boxes and sample.object_class == "steel"
    mask = sample.load_mask()
    box = sample.boxes[0]
    assert mask[int(box.y0), int(box.x0)] and mask.shape == (64, 64)
    again = open_neu_det(NEUDetConfig(root=str(neu_root), test_fraction=0.34))
    assert [s.id for s in again.samples("test")] == [s.id for s in test], "deterministic split"


def test_neu_det_box_outside_image_and_missing_annotation(neu_root, tmp_path):
    root = Path(shutil.copytree(neu_root, tmp_path / "neu"))
    xml = root / "ANNOTATIONS" / "patches_1.xml"
    xml.write_text(xml.read_text().replace("<xmax>", "<xmax>9", 1))
    with pytest.raises(DataError, match=r"patches_1.xml: box .* lies outside the 64x64 image patches_1.jpg; fix the annotation"):
        open_neu_det(NEUDetConfig(root=str(root)))
    xml.unlink()
    with pytest.raises(DataError, match=r"patches_1.jpg: no annotation patches_1.xml"):
        open_neu_det(NEUDetConfig(root=str(root)))


# -- folder (seed 002) ------------------------------------------------------------------------


def make_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for name in ("defect_001.jpg", "defect_002.jpg", "normal_001.jpg", "normal_002.jpg"):
        save(root / "images" / name, rng.integers(0, 255, (24, 24, 3), np.uint8))
    mask = np.zeros((24, 24), np.uint8)
    mask[3:7, 3:7] = 255
    save(root / "masks" / "defect_001.png", mask)
    (root / "train_labels.txt").write_text("defect_001.jpg,1\nnormal_001.jpg,0\ndefect_002.jpg,scratch\n")
    (root / "val_labels.txt").write_text("normal_002.jpg,0\n")
    return root


def test_folder_layout(tmp_path):
    data = open_folder(FolderConfig(root=str(make_folder(tmp_path / "f"))))
    train = {s.id: s for s in data.samples("train")}
    assert train["train/defect_001.jpg"].load_mask().sum() == 16
    assert train["train/defect_002.jpg"].defect_type == "scratch" and train["train/defect_002.jpg"].mask_path is None
    assert train["train/normal_001.jpg"].label == 0
    assert [s.id for s in data.samples("test")] == ["test/normal_002.jpg"]


def test_folder_label_naming_a_missing_file(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "train_labels.txt").write_text("defect_001.jpg,1\nghost.jpg,0\n")
    with pytest.raises(DataError, match=r"train_labels.txt:2: names ghost.jpg, which is not in .*images"):
        open_folder(FolderConfig(root=str(root)))


# -- captions, defectfill, hf, synthetic ----------------------------------------------------------


def test_captions_layout(tmp_path):
    root = write_dataset("captions", tmp_path / "cap", size=32, n_train=1)
    data = open_captions(CaptionsConfig(root=str(root)))
    samples = data.samples("train")
    assert len(samples) == 33, "one image per (category, type): steel 7, carpet 6, wood 5, leather 6, bottle 4, pill 5"
    assert all(s.caption.startswith("a close-up photo of") for s in samples)
    entries = json.loads((root / "captions.json").read_text())
    entries["missing.png"] = "a caption"
    (root / "captions.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match="captions.json: names missing.png, which is not in"):
        open_captions(CaptionsConfig(root=str(root)))


def test_defectfill_layout(tmp_path):
    rng = np.random.default_rng(2)
    base = tmp_path / "df" / "bottle"
    save(base / "train/defective/broken_large/000.png", rng.integers(0, 255, (16, 16, 3), np.uint8))
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 255
    save(base / "train/defective_masks/broken_large/000_mask.png", mask)
    save(base / "000.png", rng.integers(0, 255, (16, 16, 3), np.uint8))
    samples = open_defectfill(DefectFillConfig(root=str(tmp_path / "df"))).samples("train")
    assert sorted((s.label, s.defect_type) for s in samples) == [(0, "good"), (1, "broken_large")]
    (base / "train/defective_masks/broken_large/000_mask.png").unlink()
    with pytest.raises(DataError, match="defective image has no mask"):
        open_defectfill(DefectFillConfig(root=str(tmp_path / "df")))


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)) for _ in range(3)]
    table = datasets.Dataset.from_dict(
        {"image": images, "text": ["a", "b", "c"], "label": [0, 1, 1]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["good", "scratch"])}),
    )
    datasets.DatasetDict({"train": table, "test": table}).save_to_disk(str(tmp_path / "hf"))
    data = open_hf(HFConfig(root=str(tmp_path / "hf"), caption_column="text", label_column="label", test_split="test"))
    train = data.samples("train")
    assert [s.caption for s in train] == ["a", "b", "c"] and [s.defect_type for s in train] == ["good", "scratch", "scratch"]
    assert train[1].load_image().size == (16, 16) and len(data.samples("test")) == 3
    with pytest.raises(DataError, match="has no column 'caption'; columns: image, text, label"):
        open_hf(HFConfig(root=str(tmp_path / "hf"), caption_column="caption"))


def test_hf_caption_lists_keep_every_caption_and_the_coco_preset_names_its_columns(tmp_path):
    import datasets

    images = [Image.new("RGB", (8, 8), (v, v, v)) for v in (10, 200)]
    captions = [["a grey square", "a flat patch", " "], ["a white square"]]
    datasets.Dataset.from_dict({"image": images, "answer": captions}).save_to_disk(str(tmp_path / "coco"))
    # the preset's columns, a local folder in place of its hub id
    data = open_hf(HFConfig(preset="coco", root=str(tmp_path / "coco")))
    train = data.samples("train")
    assert [s.captions for s in train] == [("a grey square", "a flat patch"), ("a white square",)]
    assert [s.caption for s in train] == ["a grey square", "a white square"]
    preset = HFConfig(preset="coco")
    assert (preset.root, preset.train_split, preset.image_column, preset.caption_column) == (
        "lmms-lab/COCO-Caption", "val", "image", "answer"
    )
    assert HFConfig(preset="coco", train_split="test").train_split == "test"  # what a recipe sets wins
    with pytest.raises(ValueError, match="name a Hugging Face dataset"):
        HFConfig()


def test_synthetic_is_reproducible_and_varied():
    config = SyntheticConfig(kind="mvtec", category="wood", size=64, n_train=3, n_test=2, seed=5)
    first, second = open_synthetic(config), open_synthetic(config)
    a, b = first.samples("test")[3], second.samples("test")[3]
    assert np.array_equal(np.asarray(a.load_image()), np.asarray(b.load_image()))
    other = open_synthetic(config.model_copy(update={"seed": 6})).samples("test")[3]
    assert not np.array_equal(np.asarray(a.load_image()), np.asarray(other.load_image()))
    defective = [s for s in first.samples("test") if s.label]
    assert all(s.load_mask().any() for s in defective)
    assert len({s.defect_type for s in defective}) == 4
    neu = open_synthetic(SyntheticConfig(kind="neu", size=64, n_train=2, n_test=1))
    assert len(neu.samples("train")) == 12 and all(s.label == 1 for s in neu.samples("test"))
    with pytest.raises(DataError, match="has no category 'steel'"):
        open_synthetic(SyntheticConfig(kind="mvtec", category="steel"))


def test_synthetic_neu_samples_carry_the_boxes_the_voc_files_get(tmp_path):
    """One box per painted defect, inside the image, around the mask; the same boxes `data synth` writes."""
    from defectkit.data.configs import NEUDetConfig
    from defectkit.data.formats import open_neu_det

    samples = open_synthetic(SyntheticConfig(kind="neu", size=64, n_train=2, n_test=1)).samples("train")
    for sample in samples:
        mask = sample.load_mask()
        assert sample.boxes and all(b.label == sample.defect_type for b in sample.boxes)
        inside = np.zeros_like(mask)
        for box in sample.boxes:
            assert 0 <= box.x0 < box.x1 <= 64 and 0 <= box.y0 < box.y1 <= 64
            inside[box.y0 : box.y1, box.x0 : box.x1] = True
        assert not (mask & ~inside).any()  # every defect pixel lies in a box
    written = open_neu_det(NEUDetConfig(root=str(write_dataset("neu", tmp_path / "neu", size=64, n_train=2, n_test=1))))
    by_name = {Path(s.id).name: s.boxes for s in written.samples("train") + written.samples("test")}
    assert all(by_name[Path(s.id).name] == s.boxes for s in samples)


def test_synthetic_output_passes_check(mvtec_root, neu_root, tmp_path):
    assert check_dataset("mvtec", str(mvtec_root), None).problems == []
    assert check_dataset("neu-det", str(neu_root), None).problems == []
    captions = write_dataset("captions", tmp_path / "c", size=32, n_train=1)
    assert check_dataset("captions", str(captions), None).problems == []
