"""Build an MVTec-layout evaluation set from the texture photos scikit-image ships, with drawn defects.

    python -m benchmarks.real_photos OUT [--tiny] [--category brick ...]

writes ``OUT/<category>/train/good/*.png``, ``OUT/<category>/test/<defect>/*.png``
and ``OUT/<category>/ground_truth/<defect>/<stem>_mask.png``, which
``data.format: mvtec`` reads. Good tiles are random crops of one photo:
training tiles from the top 60 % of its rows, test tiles from the rest, so no
test pixel was seen in training. Each defective test tile carries one drawn
defect with its exact mask: a dark ``crack`` (a jagged random walk), a soft
``stain``, a dark ``hole`` with a bright rim, a thin bright ``scratch``, or a
``foreign`` patch cut from another photo. Everything is seeded: the same
arguments give the same files.

The photos are real (grey-level, 512 x 512), unlike :mod:`defectkit.data`'s
procedural textures, so settings chosen on them say more about real parts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: scikit-image texture photos used as categories (``skimage.data.<name>()``)
CATEGORIES = ("brick", "gravel", "grass")
DEFECTS = ("crack", "stain", "hole", "scratch", "foreign")
TRAIN_ROWS = (0.0, 0.6)
TEST_ROWS = (0.6, 1.0)


@dataclass(frozen=True)
class Sizes:
    """How many tiles of which size; the full set matches the issue's (60 train, 65 test), tiny is for tests."""

    tile: int = 128
    n_train: int = 60
    n_good: int = 20
    n_per_defect: int = 9


FULL = Sizes()
TINY = Sizes(tile=64, n_train=10, n_good=4, n_per_defect=2)


@cache
def photo(name: str) -> np.ndarray:
    """One scikit-image photo as float32 grey levels in 0..255."""
    import skimage.data

    if name not in CATEGORIES:
        raise ValueError(f"unknown real-photo category {name!r}; choose from {', '.join(CATEGORIES)}")
    return getattr(skimage.data, name)().astype(np.float32)


def _crop(name: str, rng: np.random.Generator, size: int, rows: tuple[float, float]) -> np.ndarray:
    image = photo(name)
    top = int(image.shape[0] * rows[0])
    bottom = max(top, int(image.shape[0] * rows[1]) - size)
    y = int(rng.integers(top, bottom + 1))
    x = int(rng.integers(0, image.shape[1] - size + 1))
    return image[y : y + size, x : x + size].copy()


def _soft(mask: Image.Image, radius: float) -> np.ndarray:
    """A mask's blurred version in 0..1: drawn defects blend into the photo instead of having cut edges."""
    return np.asarray(mask.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255.0


def draw_defect(kind: str, tile: np.ndarray, category: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect of ``kind`` on a tile; returns the tile (0..255 floats) and its boolean mask."""
    size = tile.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = (float(v) for v in rng.uniform(0.3 * size, 0.7 * size, 2))
    out = tile.copy()
    if kind == "crack":
        # a random walk with a slowly turning heading: thin, jagged and dark like a real crack
        heading, points = rng.uniform(0, 2 * np.pi), [(cx, cy)]
        for _ in range(int(rng.integers(8, 14))):
            heading += rng.normal(0, 0.5)
            step = size * rng.uniform(0.03, 0.05)
            points.append((points[-1][0] + step * np.cos(heading), points[-1][1] + step * np.sin(heading)))
        draw.line(points, fill=255, width=max(2, size // 48))
        alpha = _soft(canvas, 0.6)
        out = out * (1 - 0.75 * alpha)
    elif kind == "stain":
        rx, ry = rng.uniform(0.08, 0.14, 2) * size
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        alpha = _soft(canvas, size / 40)
        tone = rng.choice([40.0, 210.0])  # a dark (oil) or a light (dust, salt) stain
        out = out * (1 - 0.6 * alpha) + tone * 0.6 * alpha
    elif kind == "hole":
        r = rng.uniform(0.05, 0.08) * size
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        rim = Image.new("L", (size, size), 0)
        ImageDraw.Draw(rim).ellipse([cx - 1.3 * r, cy - 1.3 * r, cx + 1.3 * r, cy + 1.3 * r], fill=255)
        core, ring = _soft(canvas, 1.0), _soft(rim, 1.0)
        out = out * (1 - ring) + np.minimum(255, out * 1.4 + 30) * (ring - core).clip(0) + 15 * core
        canvas = rim
    elif kind == "scratch":
        angle, half = rng.uniform(0, np.pi), rng.uniform(0.2, 0.35) * size
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=max(1, size // 64))
        alpha = _soft(canvas, 0.5)
        out = out * (1 - 0.8 * alpha) + 235 * 0.8 * alpha
    elif kind == "foreign":
        other = CATEGORIES[(CATEGORIES.index(category) + 1 + int(rng.integers(len(CATEGORIES) - 1))) % len(CATEGORIES)]
        side = int(rng.integers(size // 6, size // 4 + 1))
        patch = _crop(other, rng, side, (0.0, 1.0))
        y0, x0 = int(cy) - side // 2, int(cx) - side // 2
        out[y0 : y0 + side, x0 : x0 + side] = patch
        draw.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], fill=255)
    else:
        raise ValueError(f"unknown defect {kind!r}; choose from {', '.join(DEFECTS)}")
    return np.clip(out, 0, 255), np.asarray(canvas) > 127


def _save(tile: np.ndarray, path: Path) -> None:
    grey = tile.round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    # RGB like MVTec's texture categories, so every detector reads it like any other colour set
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path)


def build(root: str | Path, categories: tuple[str, ...] = CATEGORIES, sizes: Sizes = FULL, seed: int = 0) -> Path:
    """Write the set under ``root`` (MVTec layout) and return ``root``; existing files are overwritten."""
    root = Path(root)
    for category in categories:
        base = root / category
        # one generator per (category, part): changing the number of tiles of one part leaves the others alone
        rng = np.random.default_rng([seed, CATEGORIES.index(category), 0])
        for i in range(sizes.n_train):
            _save(_crop(category, rng, sizes.tile, TRAIN_ROWS), base / "train" / "good" / f"{i:03d}.png")
        rng = np.random.default_rng([seed, CATEGORIES.index(category), 1])
        for i in range(sizes.n_good):
            _save(_crop(category, rng, sizes.tile, TEST_ROWS), base / "test" / "good" / f"{i:03d}.png")
        for d, kind in enumerate(DEFECTS):
            rng = np.random.default_rng([seed, CATEGORIES.index(category), 2 + d])
            for i in range(sizes.n_per_defect):
                tile, mask = draw_defect(kind, _crop(category, rng, sizes.tile, TEST_ROWS), category, rng)
                _save(tile, base / "test" / kind / f"{i:03d}.png")
                mask_path = base / "ground_truth" / kind / f"{i:03d}_mask.png"
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the MVTec-layout set into")
    parser.add_argument("--category", action="append", choices=CATEGORIES, help="only these (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="64 px tiles, 10 train and 14 test per category")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = build(args.out, tuple(args.category or CATEGORIES), TINY if args.tiny else FULL, args.seed)
    print(f"wrote {root}")


if __name__ == "__main__":
    main()
