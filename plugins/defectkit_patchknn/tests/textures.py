"""A small real-texture dataset for the tests: crops of scikit-image's texture photos with pasted defects.

Good images are random crops of one photo (``brick``, ``gravel`` or ``grass``);
training crops come from the top 60 % of the photo, test crops from the rest,
so the test images are held out. Defective test crops carry one of three
defects with an exact mask: a dark ``scratch`` line, a bright ``blob`` and a
``foreign`` patch cut from another texture.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

from defectkit import Component, hookimpl
from defectkit.data import Sample

Texture = Literal["brick", "gravel", "grass"]
DEFECTS = ("scratch", "blob", "foreign")
TRAIN_SHARE = 0.6


class TextureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texture: Texture = Field("brick", description="scikit-image texture photo")
    crop: int = Field(128, ge=32, le=256, description="crop size in pixels")
    n_train: int = Field(24, ge=0, description="good training crops")
    n_test_good: int = Field(8, ge=0, description="good test crops")
    n_test_defective: int = Field(12, ge=0, description="defective test crops, the three defects in turn")
    seed: int = Field(0, description="seed of the crop positions and defects")


@cache
def photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _crop(name: str, rng: np.random.Generator, size: int, rows: tuple[float, float]) -> np.ndarray:
    image = photo(name)
    top = int(image.shape[0] * rows[0])
    bottom = int(image.shape[0] * rows[1]) - size
    y = int(rng.integers(top, max(top, bottom) + 1))
    x = int(rng.integers(0, image.shape[1] - size + 1))
    return image[y : y + size, x : x + size].astype(np.float32)


def _defect(kind: str, crop: np.ndarray, texture: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = crop.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = (int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
    out = crop.copy()
    if kind == "scratch":
        angle = rng.uniform(0, np.pi)
        half = rng.uniform(0.15, 0.3) * size
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=3)
        mask = np.asarray(canvas) > 0
        out[mask] *= 0.3
    elif kind == "blob":
        rx, ry = rng.uniform(0.05, 0.09, 2) * size
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
        mask = np.asarray(canvas) > 0
        out[mask] = out[mask] * 0.3 + 180
    else:
        other = next(t for t in ("gravel", "brick", "grass") if t != texture)
        side = int(rng.integers(size // 6, size // 4))
        patch = _crop(other, rng, side, (0.0, 1.0))
        y0, x0 = cy - side // 2, cx - side // 2
        out[y0 : y0 + side, x0 : x0 + side] = patch
        mask = np.zeros((size, size), bool)
        mask[y0 : y0 + side, x0 : x0 + side] = True
    return np.clip(out, 0, 255), mask


class TextureCrops:
    """The dataset component (``samples(split)``); pixels are made only when a sample is loaded."""

    def __init__(self, config: TextureConfig | None) -> None:
        self.config = config or TextureConfig()

    def samples(self, split: str) -> list[Sample]:
        c = self.config
        if split == "train":
            plan = [("good", i) for i in range(c.n_train)]
        elif split == "test":
            plan = [("good", i) for i in range(c.n_test_good)]
            plan += [(DEFECTS[i % len(DEFECTS)], i) for i in range(c.n_test_defective)]
        else:
            return []
        return [
            Sample(
                id=f"{split}/{kind}/{i:03d}.png",
                split=split,
                label=int(kind != "good"),
                defect_type=kind,
                object_class=c.texture,
                loader=self._loader(split, kind, i),
            )
            for kind, i in plan
        ]

    def _loader(self, split: str, kind: str, index: int) -> Callable[[], tuple[Image.Image, np.ndarray]]:
        c = self.config
        rows = (0.0, TRAIN_SHARE) if split == "train" else (TRAIN_SHARE, 1.0)

        def load() -> tuple[Image.Image, np.ndarray]:
            # one generator per sample: the same sample is the same image on every load
            rng = np.random.default_rng(
                [c.seed, split == "train", DEFECTS.index(kind) + 1 if kind in DEFECTS else 0, index]
            )
            crop = _crop(c.texture, rng, c.crop, rows)
            mask = np.zeros(crop.shape, bool)
            if kind != "good":
                crop, mask = _defect(kind, crop, c.texture, rng)
            grey = crop.round().astype(np.uint8)
            return Image.fromarray(np.stack([grey] * 3, axis=-1)), mask

        return load


class TexturePlugin:
    """Registers :class:`TextureCrops` as the dataset format ``skimage_textures``."""

    @hookimpl
    def defectkit_datasets(self) -> list[Component]:
        return [
            Component(
                kind="dataset",
                name="skimage_textures",
                factory="defectkit_patchknn.tests.textures:TextureCrops",
                config="defectkit_patchknn.tests.textures:TextureConfig",
                summary="crops of scikit-image texture photos with pasted defects (tests)",
            )
        ]
