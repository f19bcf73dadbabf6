"""A small in-test dataset component and a recipe builder for the caption tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from defectkit import Component, hookimpl
from defectkit.data.sample import Sample

CLASSES = ("crazing", "pitted_surface", "scratches")


class DefectsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_class: int = Field(2, ge=1)
    size: int = Field(40, ge=8)


def texture(seed: int, size: int) -> Image.Image:
    """A grey noise texture with a dark stripe: a different image for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(80, 170, size=(size, size, 1)).repeat(3, axis=2)
    row = int(rng.integers(0, size - 4))
    pixels[row : row + 3] //= 3
    return Image.fromarray(pixels.astype(np.uint8))


class Defects:
    """``per_class`` defective images of each class in :data:`CLASSES` per split (object class ``steel``)."""

    def __init__(self, config: DefectsConfig) -> None:
        self.config = config

    def samples(self, split: str) -> list[Sample]:
        if split not in ("train", "test"):
            return []
        out = []
        for c, defect_type in enumerate(CLASSES):
            for i in range(self.config.per_class):
                seed = 1000 * c + i + (500 if split == "test" else 0)

                def load(seed=seed):
                    return texture(seed, self.config.size), None

                out.append(
                    Sample(
                        id=f"{split}/{defect_type}/{i:03d}.png",
                        split=split,
                        label=1,
                        defect_type=defect_type,
                        object_class="steel",
                        loader=load,
                    )
                )
        return out


class DefectsPlugin:
    """Registers the ``tiny_defects`` dataset for one test."""

    @hookimpl
    def defectkit_datasets(self) -> list[Component]:
        return [Component("dataset", "tiny_defects", f"{__name__}:Defects", f"{__name__}:DefectsConfig")]


def recipe(provider: str, options: dict[str, Any] | None = None, per_class: int = 2) -> dict[str, Any]:
    """A recipe with one caption step over the tiny dataset."""
    return {
        "version": 1,
        "name": f"captions-{provider}",
        "device": "cpu",
        "data": {"format": "tiny_defects", "with": {"per_class": per_class}},
        "steps": [{"caption": {"use": provider, "with": options or {}}}],
    }


def samples(per_class: int = 2, split: str = "train") -> list[Sample]:
    return Defects(DefectsConfig(per_class=per_class)).samples(split)
