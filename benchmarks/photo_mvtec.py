"""Write an MVTec-layout folder cut from scikit-image's texture photos, with drawn defects and exact masks.

    python -m benchmarks.photo_mvtec OUT [--texture brick] [--crop 128]

Good images are crops of one photo; training crops come from its top 60 %, test crops from the rest.
Defective test crops carry a dark ``scratch`` line, a bright ``blob`` or a ``foreign`` patch cut from
another photo. It is the real-photo case of docs/augment.md's segmentation figures
(``recipes/augment_segment.yaml --set data.format=mvtec --set data.root=OUT --set data.category=brick``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEFECTS = ("scratch", "blob", "foreign")


def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return image if image.ndim == 3 else np.stack([image] * 3, axis=-1)


def _crop(image: np.ndarray, rng: np.random.Generator, size: int, rows: tuple[float, float]) -> np.ndarray:
    top, bottom = int(image.shape[0] * rows[0]), int(image.shape[0] * rows[1]) - size
    y = int(rng.integers(top, max(top, bottom) + 1))
    x = int(rng.integers(0, image.shape[1] - size + 1))
    return image[y : y + size, x : x + size].astype(np.float32)


def _defect(kind: str, crop: np.ndarray, other: np.ndarray, rng: np.random.Generator):
    size = crop.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    out = crop.copy()
    if kind == "scratch":
        angle, half = rng.uniform(0, np.pi), rng.uniform(0.15, 0.3) * size
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=max(2, size // 40))
        mask = np.asarray(canvas) > 0
        out[mask] *= 0.3
    elif kind == "blob":
        rx, ry = rng.uniform(0.05, 0.09, 2) * size
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        mask = np.asarray(canvas) > 0
        out[mask] = out[mask] * 0.3 + 180
    else:
        side = int(rng.integers(size // 6, size // 4))
        y0, x0 = cy - side // 2, cx - side // 2
        out[y0 : y0 + side, x0 : x0 + side] = _crop(other, rng, side, (0.0, 1.0))
        mask = np.zeros((size, size), bool)
        mask[y0 : y0 + side, x0 : x0 + side] = True
    return np.clip(out, 0, 255).round().astype(np.uint8), mask


def write(
    out: Path,
    texture: str = "brick",
    crop: int = 128,
    n_train: int = 20,
    n_test_good: int = 8,
    per_defect: int = 9,
    seed: int = 0,
) -> Path:
    """The folder ``out/<texture>`` in the MVTec AD layout; returns ``out``."""
    image = _photo(texture)
    other = _photo("gravel" if texture != "gravel" else "brick")
    rng = np.random.default_rng(seed)
    root = out / texture

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    for i in range(n_train):
        save(root / "train" / "good" / f"{i:03d}.png", _crop(image, rng, crop, (0.0, 0.6)).round().astype(np.uint8))
    for i in range(n_test_good):
        save(root / "test" / "good" / f"{i:03d}.png", _crop(image, rng, crop, (0.6, 1.0)).round().astype(np.uint8))
    for kind in DEFECTS:
        for i in range(per_defect):
            picture, mask = _defect(kind, _crop(image, rng, crop, (0.6, 1.0)), other, rng)
            save(root / "test" / kind / f"{i:03d}.png", picture)
            save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--texture", default="brick", choices=("brick", "gravel", "grass"))
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    print(write(args.out, args.texture, args.crop))
