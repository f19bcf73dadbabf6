"""The one layout every generator writes, and the reader that turns it back into samples.

A ``generate`` step writes, under its step folder (or any folder)::

    generated/
      images/<defect_type>/<defect_type>_00000.png
      masks/<defect_type>/<defect_type>_00000.png     # only generators that know the mask
      metadata.jsonl                                  # one JSON object per image, in order
      contact_sheet.png                               # a grid, one row per defect type

and hands the folder to later steps as the artifact ``generated_images``. Each
metadata line has at least ``file`` (relative to the folder), ``defect_type``
and ``seed``; generators add what reproduces the image (``prompt``,
``negative_prompt``, ``scheduler``, ``steps``, ``guidance``, ``controls``,
``mask``...).

:func:`read_generated` gives the images back as :class:`~defectkit.data.Sample`
records (``split="train"``, ``label=1`` unless the type is ``good``), so a
trainer can add them to the real training samples.

Written by hand because the layout is ours: it is what ``defectkit serve``,
``evaluate`` (generation metrics) and the augment-and-detect recipe read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from defectkit.data.sample import NORMAL, Sample
from defectkit.errors import DataError
from defectkit.io import atomic_path, write_text
from defectkit.pathsafe import check_name, is_inside, safe_join

METADATA = "metadata.jsonl"
CONTACT_SHEET = "contact_sheet.png"
COMPARISON_SHEET = "real_vs_generated.png"


class GeneratedWriter:
    """Writes generated images (and masks) plus their metadata, atomically per file.

    ``metadata.jsonl`` and the contact sheet are written by :meth:`close`; a
    step interrupted before then leaves images but no metadata, so
    :func:`read_generated` refuses the half-written folder.

    Use as a context manager, or call :meth:`close` yourself::

        with GeneratedWriter(ctx.step_dir / "generated", object_class="steel") as out:
            out.add(image, "scratches", {"prompt": prompt, "seed": seed})
        ctx.add_artifact("generated_images", out.root)
    """

    def __init__(self, root: str | Path, object_class: str = "") -> None:
        self.root = Path(root)
        self.object_class = object_class
        self.records: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self.root.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        image: Image.Image,
        defect_type: str,
        meta: Mapping[str, Any] | None = None,
        mask: np.ndarray | Image.Image | None = None,
    ) -> Path:
        """Save one image (and mask), record its metadata, return the image path."""
        check_name(defect_type, f"{self.root}: generated image", "defect type")
        index = self._counts.get(defect_type, 0)
        self._counts[defect_type] = index + 1
        name = f"{defect_type}_{index:05d}.png"
        image_rel = Path("images") / defect_type / name
        with atomic_path(safe_join(self.root, image_rel)) as tmp:
            image.convert("RGB").save(tmp, format="PNG")
        record: dict[str, Any] = {"file": image_rel.as_posix(), "defect_type": defect_type}
        if self.object_class:
            record["object_class"] = self.object_class
        if mask is not None:
            mask_rel = Path("masks") / defect_type / name
            array = np.asarray(mask)
            if array.ndim == 3:
                array = array[..., 0]
            with atomic_path(safe_join(self.root, mask_rel)) as tmp:
                Image.fromarray((array > 0).astype(np.uint8) * 255).save(tmp, format="PNG")
            record["mask"] = mask_rel.as_posix()
        record.update(dict(meta or {}))
        self.records.append(record)
        return self.root / image_rel

    def close(self, contact_sheet: bool = True) -> Path:
        """Write ``metadata.jsonl`` and the contact sheet; return the folder."""
        write_text(self.root / METADATA, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records))
        if contact_sheet and self.records:
            from defectkit.data.synthetic import contact_sheet as draw_sheet

            with atomic_path(self.root / CONTACT_SHEET) as tmp:
                draw_sheet(read_generated(self.root), tmp)
        return self.root

    def __enter__(self) -> GeneratedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def read_metadata(root: str | Path) -> list[dict[str, Any]]:
    """The metadata lines of a generated folder; a DataError names what is missing or broken."""
    path = Path(root) / METADATA
    if not path.is_file():
        raise DataError(f"{root}: no {METADATA}; not a generated-images folder, or its generate step did not finish")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "file" not in record or "defect_type" not in record:
            raise DataError(f"{path}:{number}: each line needs 'file' and 'defect_type'")
        records.append(record)
    return records


def read_generated(root: str | Path, split: str = "train") -> list[Sample]:
    """The generated images of ``root`` as samples, in metadata order."""
    root = Path(root)
    samples = []
    for record in read_metadata(root):
        image_path = root / record["file"]
        mask = record.get("mask")
        for listed in (record["file"], mask):
            if listed and not is_inside(root / listed, root):
                raise DataError(f"{root / METADATA}: lists {listed}, which lies outside {root}; list files inside it")
        check_name(record["defect_type"], f"{root / METADATA}: the entry of {record['file']}", "defect type")
        if not image_path.is_file():
            raise DataError(f"{root / METADATA}: lists {record['file']}, which does not exist")
        defect_type = record["defect_type"]
        samples.append(
            Sample(
                id=f"generated/{record['file']}",
                split=split,
                label=0 if defect_type == NORMAL else 1,
                defect_type=defect_type,
                object_class=record.get("object_class", ""),
                caption=record.get("prompt"),
                image_path=image_path,
                mask_path=root / mask if mask else None,
            )
        )
    return samples


def comparison_sheet(
    real: list[Any], generated: list[Any], path: str | Path, per_side: int = 4, tile: int = 96
) -> Path:
    """A grid with one row per defect type: ``per_side`` real images, then ``per_side`` generated ones.

    Items are samples (``load_image()``) or records with a ``path``; both have ``defect_type``.

    The report shows it (the generation metrics write it beside their figures), so
    a reader can judge at a glance whether the generated images look like the class.
    """
    from PIL import ImageDraw

    types = sorted({g.defect_type for g in generated})
    gap, header = tile // 4, 14
    width = 2 * per_side * tile + gap
    sheet = Image.new("RGB", (width, header + len(types) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((2, 1), "real", fill=(0, 0, 0))
    draw.text((per_side * tile + gap + 2, 1), "generated", fill=(0, 0, 0))
    for row, defect_type in enumerate(types):
        y = header + row * tile
        sides = (
            [s for s in real if s.defect_type == defect_type],
            [g for g in generated if g.defect_type == defect_type],
        )
        for side, items in enumerate(sides):
            x0 = side * (per_side * tile + gap)
            for column, sample in enumerate(items[:per_side]):
                if hasattr(sample, "load_image"):
                    tile_image = sample.load_image()
                else:
                    with Image.open(sample.path) as opened:
                        tile_image = opened.convert("RGB")
                tile_image = tile_image.resize((tile, tile), Image.BILINEAR)
                sheet.paste(tile_image, (x0 + column * tile, y))
        draw.rectangle((0, y, 6 * len(defect_type) + 4, y + 12), fill=(0, 0, 0))
        draw.text((2, y + 1), defect_type, fill=(255, 255, 255))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
