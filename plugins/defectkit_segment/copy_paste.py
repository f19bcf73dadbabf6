"""``copy_paste``: the baseline a defect generator must beat.

Each image is a good image with one real defect pasted in: the defect is cut
out of a real defective image by its mask, scaled, rotated and flipped at
random, placed at random (inside the object's foreground for object
categories), and blended: every pixel of the mask is the defect's own pixel
(alpha 1), and a ring of ``feather`` pixels around it, cut from the defect's
own surroundings in the source image, fades from 1 to 0. The ring is defect-free
texture, so the written mask (the defect's pixels) stays the exact label, and
there is no seam. (Feathering *inside* the mask instead would fade thin defects
such as cuts and threads to ghosts that the mask still calls defects.)
"""

from __future__ import annotations

import math
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


def cut(sample: Sample, size: tuple[int, int], margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The defect's bounding box grown by ``margin``, as RGBA and mask, of ``sample`` resized to ``size`` first.

    The alpha channel marks pixels that exist (255): rotation and a box clipped at the image's
    border leave pixels that are not part of the source, and those are never pasted.
    """
    image = sample.load_image()
    mask = sample.load_mask()
    if mask is None or not mask.any():
        raise DataError(
            f"copy_paste: {sample.image_path or sample.id} ({sample.defect_type}) has no defect mask to cut by"
        )
    if image.size != size:
        image = image.resize(size, Image.BILINEAR)
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    rows, cols = np.nonzero(mask)
    box = (
        slice(max(0, rows.min() - margin), rows.max() + 1 + margin),
        slice(max(0, cols.min() - margin), cols.max() + 1 + margin),
    )
    return np.asarray(image.convert("RGBA"))[box], mask[box]


def jitter(patch: np.ndarray, mask: np.ndarray, config: CopyPasteConfig, rng: np.random.Generator):
    """Scale, rotate and flip a cut-out defect (RGBA) and its mask together."""
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
    """1 on the mask, falling linearly to 0 at ``feather`` + 1 pixels outside it."""
    if feather <= 0:
        return mask.astype(np.float32)
    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~mask)
    return np.clip((feather + 1.0 - outside) / (feather + 1.0), 0.0, 1.0).astype(np.float32)


def paste(
    good: np.ndarray,
    patch: np.ndarray,
    mask: np.ndarray,
    allowed: np.ndarray | None,
    feather: float,
    rng: np.random.Generator,
    tries: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``patch`` (RGB, or RGBA whose alpha marks existing pixels) into ``good`` at a random place.

    Returns the image and the mask of the defect's pixels in it. With ``allowed``
    (the foreground), a place where the whole defect lies inside it is searched
    for; failing that, the place covering most of it is taken and the paste
    (defect and ring) is clipped to the foreground, so nothing lands outside it.
    """
    if patch.shape[-1] == 3:
        patch = np.concatenate([patch, np.full(patch.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    if mask.shape[0] > good.shape[0] or mask.shape[1] > good.shape[1]:
        # a defect bigger than the image (a large scale of a large defect): crop it to the image
        mask, patch = mask[: good.shape[0], : good.shape[1]], patch[: good.shape[0], : good.shape[1]]
    height, width = mask.shape
    best, best_inside = (0, 0), -1.0
    for _ in range(tries):
        top = int(rng.integers(0, good.shape[0] - height + 1))
        left = int(rng.integers(0, good.shape[1] - width + 1))
        if allowed is None:
            best = (top, left)
            break
        inside = float(allowed[top : top + height, left : left + width][mask].mean()) if mask.any() else 0.0
        if inside > best_inside:
            best, best_inside = (top, left), inside
        if inside == 1.0:
            break
    top, left = best
    where = (slice(top, top + height), slice(left, left + width))
    placed = np.zeros(good.shape[:2], dtype=bool)
    placed[where] = mask
    canvas = np.zeros(good.shape[:2] + (4,), np.uint8)
    canvas[where] = patch
    keep = canvas[..., 3] > 250  # pixels of the source, not the corners rotation added
    if allowed is not None:
        keep &= allowed
    placed &= keep
    alpha = (alpha_of(placed, feather) * keep)[..., None]
    out = good.astype(np.float32) * (1 - alpha) + canvas[..., :3].astype(np.float32) * alpha
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
            patch, mask = jitter(*cut(source, (target.shape[1], target.shape[0]), math.ceil(c.feather) + 1), c, rng)
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
