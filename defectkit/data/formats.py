"""Readers of the on-disk layouts: MVTec AD, VisA, NEU-DET, plain folders, captions, DefectFill.

Opening a dataset checks its layout: folders exist, classes are not empty,
every defective image has its mask, masks are binary and of their image's
size, labels name existing files, boxes lie inside their image. Image files
are checked from their headers; a file that is truncated further in is
caught when it is decoded (and by ``defectkit data check``, which decodes
everything).
"""

from __future__ import annotations

import csv
import random
import xml.etree.ElementTree as ET
from pathlib import Path

from defectkit.data.base import ListDataset, Problems, list_images, pick_categories, require_dir, sizes_match
from defectkit.data.configs import (
    CaptionsConfig,
    DefectFillConfig,
    FolderConfig,
    MVTecConfig,
    NEUDetConfig,
    VisAConfig,
)
from defectkit.data.sample import NORMAL, Box, Sample, image_size, read_mask
from defectkit.errors import DataError

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def _mask_ok(image: Path, mask: Path | None, problems: Problems) -> bool:
    """True when ``mask`` exists, is binary and has ``image``'s size; else a recorded problem."""
    if mask is not None and problems.outside_root(mask):
        return False
    if mask is None or not mask.exists():
        problems.add("missing masks", f"{image}: defective image has no mask (expected {mask})")
        return False
    try:
        image_size(image)
        mismatch = sizes_match(image, mask)
        if mismatch:
            problems.add("masks of the wrong size", mismatch)
            return False
        read_mask(mask)
    except DataError as exc:
        problems.add("unreadable or non-binary masks", str(exc))
        return False
    return True


def _image_ok(image: Path, problems: Problems) -> bool:
    if problems.outside_root(image):
        return False
    try:
        image_size(image)
    except DataError as exc:
        problems.add("unreadable images", str(exc))
        return False
    return True


# -- MVTec AD (and VisA converted to its layout) ---------------------------------------


def _read_mvtec_category(root: Path, category: str, mask_suffix: str, problems: Problems, defect_folder: str = "") -> dict:
    base = root / category
    test_dir = require_dir(base / "test", "test folder", "an MVTec category has test/<defect type>/")
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    # a category shared for evaluation only may lack train/; any trainer then stops on "no training images"
    train_dir = base / "train" / "good"
    train_images = list_images(train_dir) if train_dir.is_dir() else []
    if train_dir.is_dir() and not train_images:
        problems.add("empty classes", f"{train_dir}: no images in the training folder")
    for path in train_images:
        if _image_ok(path, problems):
            splits["train"].append(
                Sample(id=f"{category}/train/good/{path.name}", split="train", label=0, object_class=category, image_path=path)
            )
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        defect = type_dir.name
        if problems.unsafe_name(defect, str(type_dir), "defect type folder"):
            continue
        images = list_images(type_dir)
        if not images:
            problems.add("empty classes", f"{type_dir}: defect class {defect!r} has no images")
        for path in images:
            if not _image_ok(path, problems):
                continue
            sample_id = f"{category}/test/{defect}/{path.name}"
            if defect == NORMAL:
                splits["test"].append(Sample(id=sample_id, split="test", label=0, object_class=category, image_path=path))
                continue
            mask = base / "ground_truth" / defect / f"{path.stem}{mask_suffix}.png"
            if _mask_ok(path, mask, problems):
                splits["test"].append(
                    Sample(id=sample_id, split="test", label=1, defect_type=defect, object_class=category,
                           image_path=path, mask_path=mask)
                )
    return splits


def _merge(parts: list[dict]) -> dict[str, list[Sample]]:
    merged: dict[str, list[Sample]] = {}
    for part in parts:
        for split, samples in part.items():
            merged.setdefault(split, []).extend(samples)
    return merged


def open_mvtec(config: MVTecConfig) -> ListDataset:
    """MVTec AD: ``CAT/train/good``, ``CAT/test/<type>``, ``CAT/ground_truth/<type>/<stem>_mask.png``."""
    root = require_dir(Path(config.root), "data.root")
    problems = Problems(config.on_error, str(root), root, config.follow_symlinks)
    categories = pick_categories(root, config.category, "test")
    splits = _merge([_read_mvtec_category(root, c, config.mask_suffix, problems) for c in categories])
    problems.finish(sum(len(v) for v in splits.values()))
    return ListDataset(splits, "mvtec", problems.found)


# -- VisA --------------------------------------------------------------------------------


def open_visa(config: VisAConfig) -> ListDataset:
    """VisA: the raw release with its split CSV, or the converted MVTec-like layout."""
    root = require_dir(Path(config.root), "data.root")
    problems = Problems(config.on_error, str(root), root, config.follow_symlinks)
    csv_path = root / config.split_csv
    layout = config.layout if config.layout != "auto" else ("raw" if csv_path.exists() else "mvtec")
    if layout == "mvtec":
        # the converted layout names masks ground_truth/bad/<stem>.png (no suffix)
        categories = pick_categories(root, config.category, "test")
        splits = _merge([_read_mvtec_category(root, c, "", problems) for c in categories])
    else:
        splits = _read_visa_csv(root, csv_path, config.category, problems)
    problems.finish(sum(len(v) for v in splits.values()))
    return ListDataset(splits, "visa", problems.found)


def _read_visa_csv(root: Path, csv_path: Path, wanted: str | list[str] | None, problems: Problems) -> dict:
    if not csv_path.exists():
        raise DataError(f"{csv_path}: VisA split file not found; set data.with.split_csv or use layout: mvtec")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"object", "split", "label", "image", "mask"}
    if not rows or not needed <= set(rows[0]):
        raise DataError(f"{csv_path}: expected the columns {', '.join(sorted(needed))}")
    objects = sorted({r["object"] for r in rows})
    names = objects if wanted is None else ([wanted] if isinstance(wanted, str) else list(wanted))
    for name in names:
        if name not in objects:
            raise DataError(f"{csv_path}: no object {name!r}; the file lists {', '.join(objects)}")
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for line, row in enumerate(rows, start=2):
        if row["object"] not in names or problems.unsafe_name(row["object"], f"{csv_path}:{line}", "object"):
            continue
        split = "train" if row["split"] == "train" else "test"
        image = root / row["image"]
        if not image.exists():
            problems.add("missing images", f"{csv_path}:{line}: names {row['image']}, which does not exist")
            continue
        if not _image_ok(image, problems):
            continue
        defective = row["label"].strip().lower() == "anomaly"
        sample_id = f"{row['object']}/{split}/{'bad' if defective else NORMAL}/{image.name}"
        if not defective:
            splits[split].append(Sample(id=sample_id, split=split, label=0, object_class=row["object"], image_path=image))
            continue
        mask = root / row["mask"] if row["mask"] else None
        if _mask_ok(image, mask, problems):
            splits[split].append(
                Sample(id=sample_id, split=split, label=1, defect_type="bad", object_class=row["object"],
                       image_path=image, mask_path=mask)
            )
    return splits


# -- NEU-DET -------------------------------------------------------------------------------


def _parse_voc(xml_path: Path, problems: Problems) -> tuple[str, tuple[Box, ...], tuple[int, int] | None] | None:
    try:
        tree = ET.parse(xml_path)
    except (ET.ParseError, OSError) as exc:
        problems.add("unreadable annotations", f"{xml_path}: not valid Pascal VOC XML ({exc})")
        return None
    root = tree.getroot()
    size = root.find("size")
    declared = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        declared = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if bnd is None:
            problems.add("unreadable annotations", f"{xml_path}: an <object> has no <bndbox>")
            return None
        try:
            x0, y0, x1, y1 = (float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            problems.add("unreadable annotations", f"{xml_path}: a <bndbox> has a missing or non-numeric coordinate")
            return None
        # VOC boxes are 1-based and inclusive; ours are 0-based with exclusive ends
        boxes.append(Box(x0 - 1, y0 - 1, x1, y1, name))
    if not boxes:
        problems.add("unreadable annotations", f"{xml_path}: no <object> boxes")
        return None
    return boxes[0].label, tuple(boxes), declared


def _boxes_mask(boxes: tuple[Box, ...], width: int, height: int):
    import numpy as np

    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        mask[int(box.y0) : int(round(box.y1)), int(box.x0) : int(round(box.x1))] = True
    return mask


def _neu_sample(image: Path, xml_path: Path, split: str, problems: Problems) -> Sample | None:
    parsed = _parse_voc(xml_path, problems)
    if parsed is None or not _image_ok(image, problems):
        return None
    label, boxes, _ = parsed
    if label not in NEU_CLASSES:
        problems.add("unknown classes", f"{xml_path}: class {label!r} is not one of NEU-DET's {', '.join(NEU_CLASSES)}")
        return None
    width, height = image_size(image)
    for box in boxes:
        if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height or box.x1 <= box.x0 or box.y1 <= box.y0:
            problems.add(
                "boxes outside the image",
                f"{xml_path}: box ({box.x0 + 1:g}, {box.y0 + 1:g}, {box.x1:g}, {box.y1:g}) lies outside the "
                f"{width}x{height} image {image.name}; fix the annotation",
            )
            return None

    def load(image=image, boxes=boxes, width=width, height=height):
        from defectkit.data.sample import read_image

        return read_image(image), _boxes_mask(boxes, width, height)

    return Sample(id=f"{split}/{label}/{image.name}", split=split, label=1, defect_type=label, object_class="steel",
                  boxes=boxes, image_path=image, loader=load)


def open_neu_det(config: NEUDetConfig) -> ListDataset:
    """NEU-DET: ``IMAGES/`` + ``ANNOTATIONS/`` (VOC XML), or ``train|validation/{images,annotations}``.

    Every image is defective (the six classes); its boxes also give a coarse
    mask (their union) for weak supervision: ``load_mask()`` returns it.
    """
    root = require_dir(Path(config.root), "data.root")
    problems = Problems(config.on_error, str(root), root, config.follow_symlinks)
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    split_dirs = {"train": root / "train", "test": root / "validation"}
    if all((d / "annotations").is_dir() for d in split_dirs.values()):
        for split, folder in split_dirs.items():
            images = {p.stem: p for p in sorted((folder / "images").rglob("*")) if p.suffix.lower() in (".jpg", ".png", ".bmp")}
            splits[split] = _neu_pairs(images, folder / "annotations", split, problems)
    else:
        image_dir = require_dir(root / "IMAGES", "NEU-DET image folder", "expected IMAGES/ and ANNOTATIONS/ (or train/ and validation/)")
        annotation_dir = require_dir(root / "ANNOTATIONS", "NEU-DET annotation folder")
        images = {p.stem: p for p in list_images(image_dir)}
        samples = _neu_pairs(images, annotation_dir, "train", problems)
        rng = random.Random(config.seed)
        for cls in NEU_CLASSES:
            members = sorted((s for s in samples if s.defect_type == cls), key=lambda s: s.id)
            if not members:
                problems.add("empty classes", f"{image_dir}: class {cls!r} has no images")
                continue
            rng.shuffle(members)
            cut = round(len(members) * config.test_fraction)
            for i, sample in enumerate(members):
                split = "test" if i < cut else "train"
                splits[split].append(_with_split(sample, split))
        for split in splits:
            splits[split].sort(key=lambda s: s.id)
    problems.finish(sum(len(v) for v in splits.values()))
    return ListDataset(splits, "neu-det", problems.found)


def _with_split(sample: Sample, split: str) -> Sample:
    from dataclasses import replace

    return replace(sample, split=split, id=f"{split}/{sample.defect_type}/{Path(sample.id).name}")


def _neu_pairs(images: dict[str, Path], annotation_dir: Path, split: str, problems: Problems) -> list[Sample]:
    require_dir(annotation_dir, "NEU-DET annotation folder")
    xmls = {p.stem: p for p in sorted(annotation_dir.glob("*.xml"))}
    out = []
    for stem in sorted(set(images) | set(xmls)):
        if stem not in xmls:
            problems.add("images without annotation", f"{images[stem]}: no annotation {stem}.xml in {annotation_dir}")
            continue
        if stem not in images:
            problems.add("annotations without image", f"{xmls[stem]}: no image named {stem}.* beside it")
            continue
        sample = _neu_sample(images[stem], xmls[stem], split, problems)
        if sample is not None:
            out.append(sample)
    return out


# -- folder (seed 002) ----------------------------------------------------------------------


def open_folder(config: FolderConfig) -> ListDataset:
    """``images/``, ``masks/<stem>.png`` and ``train_labels.txt``/``val_labels.txt`` with ``name,label`` lines."""
    root = require_dir(Path(config.root), "data.root")
    problems = Problems(config.on_error, str(root), root, config.follow_symlinks)
    image_dir = require_dir(root / config.images, "image folder")
    mask_dir = root / config.masks
    splits: dict[str, list[Sample]] = {}
    for split, name in (("train", config.train_labels), ("test", config.val_labels)):
        if name is None:
            continue
        labels_path = root / name
        if not labels_path.exists():
            if split == "train":
                raise DataError(f"{labels_path}: label file not found; it lists 'name,label' lines (label 0/1)")
            continue
        splits[split] = []
        for line_no, line in enumerate(labels_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2 or not parts[0]:
                problems.add("bad label lines", f"{labels_path}:{line_no}: expected 'name,label', got {line!r}")
                continue
            file_name, label_text = parts[0], parts[1]
            where = f"{labels_path}:{line_no}"
            if problems.unsafe_name(file_name, where, "file name"):
                continue
            image = image_dir / file_name
            if not image.exists():
                problems.add("labels naming missing files", f"{labels_path}:{line_no}: names {file_name}, which is not in {image_dir}")
                continue
            if not _image_ok(image, problems):
                continue
            normal = label_text in ("0", NORMAL, "normal")
            defect = NORMAL if normal else ("defect" if label_text == "1" else label_text)
            if problems.unsafe_name(defect, where, "label"):
                continue
            sample_id = f"{split}/{file_name}"
            if normal:
                splits[split].append(Sample(id=sample_id, split=split, label=0, image_path=image))
                continue
            mask = mask_dir / f"{Path(file_name).stem}.png"
            if not mask.exists():
                # masks are optional in this layout: such images train the classifier only
                splits[split].append(Sample(id=sample_id, split=split, label=1, defect_type=defect, image_path=image))
            elif _mask_ok(image, mask, problems):
                splits[split].append(Sample(id=sample_id, split=split, label=1, defect_type=defect, image_path=image, mask_path=mask))
        if not splits[split]:
            problems.add("empty classes", f"{labels_path}: no usable samples")
    problems.finish(sum(len(v) for v in splits.values()))
    return ListDataset(splits, "folder", problems.found)


# -- captions (seed 004) ----------------------------------------------------------------------


def open_captions(config: CaptionsConfig) -> ListDataset:
    """``images/`` plus ``captions.json``: ``{"file.jpg": "caption"}`` or ``{"file.jpg": {"caption": ..., "defect_type": ...}}``."""
    import json

    root = require_dir(Path(config.root), "data.root")
    problems = Problems(config.on_error, str(root), root, config.follow_symlinks)
    image_dir = require_dir(root / config.images, "image folder")
    captions_path = root / config.captions
    if not captions_path.exists():
        raise DataError(f"{captions_path}: captions file not found; it maps image file names to captions")
    try:
        entries = json.loads(captions_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{captions_path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(entries, dict):
        raise DataError(f"{captions_path}: expected an object mapping file names to captions")
    samples = []
    for file_name, entry in sorted(entries.items()):
        text, defect = (entry, NORMAL) if isinstance(entry, str) else (entry.get("caption"), entry.get("defect_type", NORMAL))
        if not isinstance(text, str) or not text.strip():
            problems.add("empty captions", f"{captions_path}: {file_name!r} has no caption text")
            continue
        if problems.unsafe_name(file_name, str(captions_path), "file name") or (
            problems.unsafe_name(str(defect), f"{captions_path}: the entry of {file_name!r}", "defect type")
        ):
            continue
        image = image_dir / file_name
        if not image.exists():
            problems.add("captions naming missing files", f"{captions_path}: names {file_name}, which is not in {image_dir}")
            continue
        if _image_ok(image, problems):
            samples.append(Sample(id=f"train/{file_name}", split="train", label=int(defect != NORMAL), defect_type=defect,
                                  caption=text.strip(), image_path=image))
    unlisted = sorted({p.name for p in list_images(image_dir)} - set(entries))
    if unlisted:
        problems.add("images without captions", f"{image_dir / unlisted[0]}: not in {captions_path.name} ({len(unlisted)} such images)")
    problems.finish(len(samples))
    return ListDataset({"train": samples}, "captions", problems.found)


# -- DefectFill (seed 001) ----------------------------------------------------------------------


def open_defectfill(config: DefectFillConfig) -> ListDataset:
    """``CAT/train/defective/<type>/``, ``CAT/train/defective_masks/<type>/<stem>_mask.png``; good images in
    ``CAT/train/good/`` or directly in ``CAT/``."""
    root = require_dir(Path(config.root), "data.root")
    problems = Problems(config.on_error, str(root), root, config.follow_symlinks)
    samples: list[Sample] = []
    for category in pick_categories(root, config.category, "train/defective"):
        base = root / category
        for good_dir in (base / "train" / "good", base):
            if good_dir.is_dir():
                for path in list_images(good_dir):
                    if _image_ok(path, problems):
                        samples.append(Sample(id=f"{category}/good/{path.name}", split="train", label=0,
                                              object_class=category, image_path=path))
        for type_dir in sorted(p for p in (base / "train" / "defective").iterdir() if p.is_dir()):
            if problems.unsafe_name(type_dir.name, str(type_dir), "defect type folder"):
                continue
            images = list_images(type_dir)
            if not images:
                problems.add("empty classes", f"{type_dir}: defect class {type_dir.name!r} has no images")
            for path in images:
                mask = base / "train" / "defective_masks" / type_dir.name / f"{path.stem}{config.mask_suffix}.png"
                if _image_ok(path, problems) and _mask_ok(path, mask, problems):
                    samples.append(Sample(id=f"{category}/{type_dir.name}/{path.name}", split="train", label=1,
                                          defect_type=type_dir.name, object_class=category, image_path=path, mask_path=mask))
    problems.finish(len(samples))
    return ListDataset({"train": samples}, "defectfill", problems.found)
