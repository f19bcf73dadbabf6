"""Built-in synthetic defect data: no download, reproducible by seed, exact masks.

The ``synthetic`` dataset format renders images on the fly from
:mod:`defectkit.data.procedural`; :func:`write_dataset` writes the same kind of
images to disk in the real layouts (MVTec AD, NEU-DET, seed 004's captions),
so every reader can be tried on them (``defectkit data synth``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.data.base import ListDataset
from defectkit.data.configs import SyntheticConfig
from defectkit.data.procedural import CATEGORIES, MVTEC_CATEGORIES, NEU_CLASSES, Rendered, render, stable_seed
from defectkit.data.sample import NORMAL, Box, Sample
from defectkit.errors import DataError


@lru_cache(maxsize=512)
def _render(category: str, defect: str, size: int, seed: int) -> Rendered:
    # load_image and load_mask of one sample each need the same rendering
    return render(category, defect, size, seed)


@dataclass(frozen=True)
class _Spec:
    """What one synthetic sample is; its pixels are a pure function of this and the size."""

    category: str
    defect: str
    split: str
    index: int
    id: str

    def seed(self, base: int) -> int:
        return stable_seed(base, self.category, self.defect, self.split, self.index)


def _sample(spec: _Spec, config: SyntheticConfig, with_caption: bool = False, with_boxes: bool = False) -> Sample:
    seed, size = spec.seed(config.seed), config.size

    def load() -> tuple[Image.Image, np.ndarray]:
        rendered = _render(spec.category, spec.defect, size, seed)
        return Image.fromarray(rendered.image), rendered.mask.copy()

    caption = _render(spec.category, spec.defect, size, seed).caption if with_caption else None
    # one box per painted defect instance, as NEU-DET annotates (and as `data synth --kind neu` writes to VOC)
    boxes = (
        tuple(Box(*b, label=spec.defect) for b in _render(spec.category, spec.defect, size, seed).boxes)
        if with_boxes
        else ()
    )
    return Sample(id=spec.id, split=spec.split, label=int(spec.defect != NORMAL), defect_type=spec.defect,
                  object_class=spec.category, caption=caption, boxes=boxes, loader=load)


def _categories(config: SyntheticConfig) -> list[str]:
    allowed = list(MVTEC_CATEGORIES) if config.kind == "mvtec" else ["steel"] if config.kind == "neu" else list(CATEGORIES)
    if config.category is None:
        return allowed
    wanted = [config.category] if isinstance(config.category, str) else list(config.category)
    for name in wanted:
        if name not in allowed:
            raise DataError(f"data.category: the synthetic {config.kind} data has no category {name!r}; choose from {', '.join(allowed)}")
    return wanted


def _specs(config: SyntheticConfig) -> list[_Spec]:
    specs: list[_Spec] = []
    for category in _categories(config):
        if config.kind == "mvtec":
            specs += [_Spec(category, NORMAL, "train", i, f"{category}/train/good/{i:03d}.png") for i in range(config.n_train)]
            for defect in [NORMAL, *CATEGORIES[category].defects]:
                specs += [_Spec(category, defect, "test", i, f"{category}/test/{defect}/{i:03d}.png") for i in range(config.n_test)]
        elif config.kind == "neu":
            for defect in NEU_CLASSES:
                # numbered across splits, as NEU-DET's own files are (crazing_1 ... crazing_300)
                for split, count, first in (("train", config.n_train, 1), ("test", config.n_test, config.n_train + 1)):
                    specs += [
                        _Spec(category, defect, split, i, f"{split}/{defect}/{defect}_{first + i}.jpg") for i in range(count)
                    ]
        else:  # captions: every category, good and defective
            for defect in [NORMAL, *CATEGORIES[category].defects]:
                specs += [_Spec(category, defect, "train", i, f"train/{category}_{defect}_{i:03d}.png") for i in range(config.n_train)]
    return specs


def synthetic_splits(config: SyntheticConfig) -> dict[str, list[Sample]]:
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for spec in _specs(config):
        splits[spec.split].append(
            _sample(spec, config, with_caption=config.kind == "captions", with_boxes=config.kind == "neu")
        )
    return splits


def open_synthetic(config: SyntheticConfig) -> ListDataset:
    """The ``synthetic`` format: images rendered when loaded, nothing on disk."""
    return ListDataset(synthetic_splits(config), f"synthetic-{config.kind}")


def _voc_xml(name: str, size: int, boxes: list[Box]) -> str:
    objects = "".join(
        f"<object><name>{b.label}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{int(b.x0) + 1}</xmin><ymin>{int(b.y0) + 1}</ymin><xmax>{int(b.x1)}</xmax><ymax>{int(b.y1)}</ymax></bndbox></object>"
        for b in boxes
    )
    return (f"<annotation><folder>IMAGES</folder><filename>{name}</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>1</depth></size><segmented>0</segmented>{objects}</annotation>\n")


def write_dataset(kind: str, out: str | Path, *, size: int = 128, n_train: int = 40, n_test: int = 10, seed: int = 0,
                  categories: list[str] | None = None) -> Path:
    """Write synthetic data to ``out`` in a real layout; returns ``out``.

    ``mvtec``: ``out/<category>/{train/good,test/<type>,ground_truth/<type>}``;
    ``neu``: ``out/IMAGES/<class>_<n>.jpg`` + ``out/ANNOTATIONS/<class>_<n>.xml``;
    ``captions``: ``out/images/`` + ``out/captions.json``. The folder is
    written under a temporary name and renamed at the end: an interrupted
    run leaves no half dataset. ``out`` must not exist or be empty.
    """
    from defectkit.io import atomic_dir

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: already exists and is not empty; choose a new folder")
    if kind not in ("mvtec", "neu", "captions"):
        raise DataError(f"unknown synthetic kind {kind!r}; choose mvtec, neu or captions")
    config = SyntheticConfig(kind=kind, size=size, n_train=n_train, n_test=n_test, seed=seed, category=categories)
    if out.exists():
        out.rmdir()
    with atomic_dir(out) as tmp:
        captions: dict[str, dict[str, str]] = {}
        for spec in _specs(config):
            rendered = _render(spec.category, spec.defect, size, spec.seed(seed))
            if kind == "mvtec":
                path = tmp / spec.id
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rendered.image).save(path)
                if spec.defect != NORMAL:
                    mask_path = tmp / spec.category / "ground_truth" / spec.defect / f"{path.stem}_mask.png"
                    mask_path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(rendered.mask.astype(np.uint8) * 255).save(mask_path)
            elif kind == "neu":
                name = Path(spec.id).name
                for folder in ("IMAGES", "ANNOTATIONS"):
                    (tmp / folder).mkdir(exist_ok=True)
                Image.fromarray(rendered.image).convert("L").save(tmp / "IMAGES" / name, quality=95)
                boxes = [Box(*b, label=spec.defect) for b in rendered.boxes]
                (tmp / "ANNOTATIONS" / f"{Path(name).stem}.xml").write_text(_voc_xml(name, size, boxes))
            else:
                name = Path(spec.id).name
                (tmp / "images").mkdir(exist_ok=True)
                Image.fromarray(rendered.image).save(tmp / "images" / name)
                captions[name] = {"caption": rendered.caption, "defect_type": spec.defect}
        if kind == "captions":
            (tmp / "captions.json").write_text(json.dumps(captions, indent=1) + "\n")
        splits = synthetic_splits(config)
        contact_sheet(splits["test"] or splits["train"], tmp / "contact_sheet.png")
    return out


def contact_sheet(samples: list[Sample], path: Path, per_row: int = 10, tile: int = 112) -> Path:
    """A grid: one row per category cycling through its types (good first), defects outlined in red, labelled."""
    from PIL import ImageDraw
    from scipy import ndimage

    by_category: dict[str, dict[str, list[Sample]]] = {}
    for sample in samples:
        by_category.setdefault(sample.object_class, {}).setdefault(sample.defect_type, []).append(sample)
    rows = []
    for types in by_category.values():
        order = sorted(types, key=lambda t: (t != NORMAL, t))
        row, taken = [], {t: 0 for t in order}
        while len(row) < per_row and any(taken[t] < len(types[t]) for t in order):
            for t in order:
                if taken[t] < len(types[t]) and len(row) < per_row:
                    row.append(types[t][taken[t]])
                    taken[t] += 1
        rows.append(row)
    sheet = Image.new("RGB", (per_row * tile, len(rows) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, sample in enumerate(row):
            image = np.asarray(sample.load_image().resize((tile, tile), Image.BILINEAR)).copy()
            mask = sample.load_mask()
            if mask is not None and mask.any():
                small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((tile, tile), Image.NEAREST)) > 0
                image[small & ~ndimage.binary_erosion(small)] = (255, 40, 40)
            sheet.paste(Image.fromarray(image), (c * tile, r * tile))
            label = f"{sample.object_class}: {sample.defect_type}" if c == 0 else sample.defect_type
            draw.rectangle((c * tile, r * tile, c * tile + 6 * len(label) + 4, r * tile + 12), fill=(0, 0, 0))
            draw.text((c * tile + 2, r * tile + 1), label, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
