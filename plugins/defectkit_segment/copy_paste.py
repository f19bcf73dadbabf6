"""``copy_paste``: the baseline a defect generator must beat.

Each image is a good image with one real defect pasted in: the defect is cut
out of a real defective image by its mask, scaled, rotated and flipped at
random, placed at random (inside the object's foreground for object
categories), and blended with an alpha that rises from 0 at the mask's edge to
1 ``feather`` pixels inside it. The alpha is zero outside the mask, so the
written mask is exactly the set of pixels that changed, and there is no seam.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from defectkit.data.sample import Sample
from defectkit.errors import DataError
from defectkit.generated import GeneratedWriter
from defectkit_segment.config import CopyPasteConfig

# categories whose good images show one object on a background: a defect pasted on the background
# would be a defect no real image has. MVTec AD's objects, VisA's, and the synthetic ones.
OBJECT_CATEGORIES = frozenset(
    "bottle cable capsule hazelnut metal_nut pill screw toothbrush transistor zipper "
    "candle capsules cashew chewinggum fryum macaroni1 macaroni2 pcb1 pcb2 pcb3 pcb4 pipe_fryum".split()
)


def foreground(image: np.ndarray, threshold: float) -> np.ndarray:
    """The object's pixels: those far from the border's median colour, holes filled, the largest component."""
    from scipy import ndimage

    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    distance = np.linalg.norm(image.astype(np.float32) - np.median(border, axis=0), axis=-1)
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(distance > threshold, iterations=1))
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def cut(sample: Sample, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The defect's bounding box (RGB and mask) of ``sample``, its image resized to ``size`` first."""
    image = sample.load_image()
    mask = sample.load_mask()
    if mask is None or not mask.any():
        raise DataError(f"copy_paste: {sample.image_path or sample.id} ({sample.defect_type}) has no defect mask to cut by")
    if image.size != size:
        image = image.resize(size, Image.BILINEAR)
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    rows, cols = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    return np.asarray(image)[box], mask[box]


def jitter(patch: np.ndarray, mask: np.ndarray, config: CopyPasteConfig, rng: np.random.Generator):
    """Scale, rotate and flip a cut-out defect and its mask together."""
    scale = rng.uniform(*config.scale)
    h, w = mask.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = Image.fromarray(patch).resize(size, Image.BILINEAR)
    cover = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    angle = rng.uniform(-config.rotation, config.rotation)
    image = image.rotate(angle, Image.BILINEAR, expand=True)
    cover = cover.rotate(angle, Image.NEAREST, expand=True)
    patch, mask = np.asarray(image), np.asarray(cover) > 127
    if config.flip:
        if rng.random() < 0.5:
            patch, mask = patch[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            patch, mask = patch[::-1], mask[::-1]
    return patch, mask


def alpha_of(mask: np.ndarray, feather: float) -> np.ndarray:
    """0 outside the mask, rising linearly to 1 at ``feather`` pixels inside it."""
    if feather <= 0:
        return mask.astype(np.float32)
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.clip(inside / feather, 0.0, 1.0).astype(np.float32) * mask


def paste(
    good: np.ndarray,
    patch: np.ndarray,
    mask: np.ndarray,
    allowed: np.ndarray | None,
    feather: float,
    rng: np.random.Generator,
    tries: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``patch`` where ``mask`` is set into ``good`` at a random place; returns (image, mask).

    With ``allowed`` (the foreground), a place where the whole defect lies inside
    it is searched for; failing that, the place covering most of it is taken and
    the defect is clipped to the foreground, so nothing lands outside it.
    """
    height, width = mask.shape[0], good.shape[1]
    if mask.shape[0] > good.shape[0] or mask.shape[1] > width:
        # a defect bigger than the image (a large scale of a large defect): crop it to the image
        mask, patch = mask[: good.shape[0], :width], patch[: good.shape[0], :width]
        height = mask.shape[0]
    best, best_inside = None, -1.0
    for _ in range(tries):
        top = int(rng.integers(0, good.shape[0] - height + 1))
        left = int(rng.integers(0, width - mask.shape[1] + 1))
        if allowed is None:
            best = (top, left)
            break
        inside = float(allowed[top : top + height, left : left + mask.shape[1]][mask].mean())
        if inside > best_inside:
            best, best_inside = (top, left), inside
        if inside == 1.0:
            break
    top, left = best
    placed = np.zeros(good.shape[:2], dtype=bool)
    placed[top : top + height, left : left + mask.shape[1]] = mask
    canvas = np.zeros_like(good)
    canvas[top : top + height, left : left + mask.shape[1]] = patch
    if allowed is not None:
        placed &= allowed
    alpha = alpha_of(placed, feather)[..., None]
    out = good.astype(np.float32) * (1 - alpha) + canvas.astype(np.float32) * alpha
    return np.clip(np.round(out), 0, 255).astype(np.uint8), placed


class CopyPaste:
    """The ``copy_paste`` generator: real defects cut out by their masks, pasted into good images."""

    def __init__(self, config: CopyPasteConfig | None = None) -> None:
        self.config = config or CopyPasteConfig()

    def generate(self, ctx: Any) -> None:
        c = self.config
        defects = sorted((s for s in ctx.samples(c.defect_split) if s.label == 1), key=lambda s: s.id)
        goods = sorted((s for s in ctx.samples(c.good_split) if s.label == 0), key=lambda s: s.id)
        if not defects:
            raise DataError(
                f"copy_paste: split {c.defect_split!r} has no defective image to cut defects from "
                "(with an MVTec-like dataset set data.split.protocol: generation)"
            )
        if not goods:
            raise DataError(f"copy_paste: split {c.good_split!r} has no good image to paste into")
        by_type: dict[str, list[Sample]] = {}
        for sample in defects:
            by_type.setdefault(sample.defect_type, []).append(sample)
        rng = np.random.default_rng(ctx.seed if c.seed is None else c.seed)
        jobs = [(t, n) for t in sorted(by_type) for n in range(c.images_per_class)]
        writer = GeneratedWriter(ctx.step_dir / "generated", object_class=goods[0].object_class)
        for index, (defect_type, number) in enumerate(
            ctx.progress(jobs, total=len(jobs), description=f"{ctx.step_id}: copy_paste", unit="images")
        ):
            source = by_type[defect_type][number % len(by_type[defect_type])]
            good = goods[index % len(goods)]
            target = np.asarray(good.load_image())
            on_object = c.placement == "foreground" or (
                c.placement == "auto" and good.object_class in OBJECT_CATEGORIES
            )
            allowed = foreground(target, c.foreground_threshold) if on_object else None
            if allowed is not None and not allowed.any():
                raise DataError(
                    f"copy_paste: found no foreground in {good.image_path or good.id}; "
                    "lower foreground_threshold or set placement: anywhere"
                )
            patch, mask = jitter(*cut(source, (target.shape[1], target.shape[0])), c, rng)
            image, placed = paste(target, patch, mask, allowed, c.feather, rng)
            writer.add(
                Image.fromarray(image),
                defect_type,
                {"generator": "copy_paste", "seed": index, "source": good.id, "defect_source": source.id},
                mask=placed,
            )
        root = writer.close()
        ctx.add_artifact("generated_images", root)
        ctx.add_figure(root / "contact_sheet.png", f"{len(jobs)} copy-paste images, one row per defect type")
        ctx.log_metrics({"generated_images": len(jobs), "defect_types": len(by_type)})
