"""Synthetic defects pasted into good images: a validation set for users who have only good images.

A detector trained on good images alone still needs something defective to
choose its checkpoint, options and threshold on. :func:`paste_defect` makes
one from a good image: a foreign patch (a piece of another good image, moved
and turned, or of the same image's inverse), a thin line (dark or bright), a
blurred region or a colour change, inside a random irregular shape, and
returns the image with its exact mask. The shapes come from
:mod:`defectkit.data.procedural`, the texture renderer's own blob and stroke
primitives; numpy and scipy only.

These are not real defects: a setting that wins here is a better guess than
the last checkpoint, not a measurement. Report figures on real defects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from defectkit.data import procedural

#: the kinds :func:`paste_defect` draws, in the order a seed cycles through them
KINDS = ("foreign", "line", "blur", "colour")


def _shape(rng: np.random.Generator, size: int, scale: tuple[float, float]) -> np.ndarray:
    radius = float(rng.uniform(*scale)) * size / 2
    margin = radius + 2
    cx, cy = (float(v) for v in rng.uniform(margin, size - margin, 2))
    return procedural.blob(rng, size, cx, cy, radius, rough=0.3, aspect=float(rng.uniform(0.6, 1.6)),
                           angle=float(rng.uniform(0, np.pi)))


def paste_defect(
    image: np.ndarray,
    rng: np.random.Generator,
    kind: str | None = None,
    donor: np.ndarray | None = None,
    scale: tuple[float, float] = (0.08, 0.25),
) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the square ``uint8 (S, S, 3)`` ``image`` with one synthetic defect, and its boolean mask.

    ``kind``: one of :data:`KINDS` (default: drawn from ``rng``). ``donor``: a good image of the same size the
    foreign patch is cut from (default: the image itself, flipped and turned). ``scale``: the defect's size as
    a share of the image side (min, max). The mask is where the defect's alpha is at least a half.
    """
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3:
        raise ValueError(f"paste_defect: need a square (S, S, 3) image, got {image.shape}")
    size = image.shape[0]
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    out = image.astype(np.float32) / 255.0
    if kind == "line":
        length = float(rng.uniform(0.3, 0.7)) * size
        angle = float(rng.uniform(0, 2 * np.pi))
        x0, y0 = (float(v) for v in rng.uniform(0.2 * size, 0.8 * size, 2))
        alpha = procedural.stroke(rng, size, x0, y0, length, angle, width=max(1.5, size / 64), wiggle=0.2)
        colour = (0.05, 0.05, 0.05) if rng.random() < 0.5 else (0.95, 0.95, 0.95)
        procedural.mix(out, alpha, colour)
    else:
        alpha = _shape(rng, size, scale)
        if kind == "foreign":
            source = image if donor is None else donor
            turned = np.rot90(source[::-1] if donor is None else source, int(rng.integers(1, 4)))
            shift = tuple(int(v) for v in rng.integers(0, size, 2))
            procedural.mix(out, alpha, np.roll(turned, shift, axis=(0, 1)).astype(np.float32) / 255.0)
        elif kind == "blur":
            blurred = ndimage.gaussian_filter(out, sigma=(size / 40 + 1, size / 40 + 1, 0))
            procedural.mix(out, alpha, blurred)
        elif kind == "colour":
            tint = np.clip(out.mean(axis=(0, 1)) + rng.choice([-1.0, 1.0], 3) * rng.uniform(0.25, 0.45, 3), 0, 1)
            procedural.mix(out, alpha * 0.85, np.clip(out * 0.4 + tint * 0.6, 0, 1))
        else:
            raise ValueError(f"paste_defect: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    mask = alpha >= 0.5
    if not mask.any():  # a shape that fell between pixels: mark its strongest pixel
        mask = alpha >= alpha.max() > 0
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), mask


def validation_set(
    images: np.ndarray, seed: int, kinds: tuple[str, ...] = KINDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each good ``uint8 (N, S, S, 3)`` image once as it is and once with a pasted defect.

    Returns ``(images (2N, S, S, 3), masks (2N, S, S) bool, labels (2N,))``: the N good ones first (empty
    masks, label 0), then the N defective ones (label 1), kinds cycling through ``kinds``, each foreign
    patch cut from the next image. The same ``seed`` gives the same set.
    """
    rng = np.random.default_rng(seed)
    count = len(images)
    pasted, masks = [], []
    for index in range(count):
        donor = images[(index + 1) % count] if count > 1 else None
        image, mask = paste_defect(images[index], rng, kinds[index % len(kinds)], donor)
        pasted.append(image)
        masks.append(mask)
    all_images = np.concatenate([images, np.stack(pasted)])
    all_masks = np.concatenate([np.zeros(images.shape[:3], bool), np.stack(masks)])
    labels = np.concatenate([np.zeros(count, np.int64), np.ones(count, np.int64)])
    return all_images, all_masks, labels
