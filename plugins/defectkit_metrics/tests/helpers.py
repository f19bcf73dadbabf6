"""Test helpers: a tiny MVTec-layout tree, tiny models built in the test, tiny step components.

Nothing here downloads: every network is built from code with a fixed seed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict

from defectkit.components import Component
from defectkit.data.sample import NORMAL
from defectkit.hookspecs import hookimpl
from defectkit_metrics.inputs import mvtec_test_samples

SIZE = 32
DEFECT_TYPES = ("scratch", "dent")


def _texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    base = rng.integers(90, 160, size=(size, size, 1))
    return np.clip(base + rng.integers(-20, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)


def write_mvtec(root: Path, n_good: int = 4, n_defect: int = 4, seed: int = 0) -> Path:
    """A category ``root`` with train/good, test/good, test/<type> and ground_truth/<type>/<stem>_mask.png."""
    rng = np.random.default_rng(seed)
    for i in range(n_good):
        for split in ("train", "test"):
            path = root / split / NORMAL / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_texture(rng)).save(path)
    for t, defect_type in enumerate(DEFECT_TYPES):
        for i in range(n_defect):
            image = _texture(rng)
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            y, x = rng.integers(2, SIZE - 10, size=2)
            mask[y : y + 4 + t * 2, x : x + 6] = 255
            if i % 2:  # a second, separate region in every other image
                mask[SIZE - 4 : SIZE - 2, 1:3] = 255
            image[mask > 0] = 30 + 60 * t
            img_path = root / "test" / defect_type / f"{i:03d}.png"
            mask_path = root / "ground_truth" / defect_type / f"{i:03d}_mask.png"
            img_path.parent.mkdir(parents=True, exist_ok=True)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(img_path)
            Image.fromarray(mask).save(mask_path)
    return root


def make_map(mask: np.ndarray, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """A noisy anomaly map that is high on the mask, optionally at another size (``size`` x ``size``)."""
    values = mask.astype(np.float32) * 0.6 + rng.random(mask.shape, dtype=np.float32) * 0.7
    if size is None or size == mask.shape[0]:
        return values
    return np.asarray(Image.fromarray(values, mode="F").resize((size, size), Image.BILINEAR))


def write_maps(category: Path, maps_dir: Path, seed: int = 1, size: int | None = None) -> dict[str, np.ndarray]:
    """Maps for every test image of ``category`` as ``<type>/<stem>.npy``; returns them by relative path."""
    rng = np.random.default_rng(seed)
    out = {}
    for sample in mvtec_test_samples(category):
        anomaly_map = make_map(sample.load_mask(), rng, size)
        rel = f"{sample.defect_type}/{sample.image_path.stem}.npy"
        (maps_dir / sample.defect_type).mkdir(parents=True, exist_ok=True)
        np.save(maps_dir / rel, anomaly_map)
        out[rel] = anomaly_map
    return out


# -- tiny models (offline stand-ins for the standard extractors; the image ones are in defectkit_metrics.tiny) --


def tiny_clip():
    """(model, preprocess, tokenizer) of a random-weight open_clip model built from a config."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": SIZE},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return model, open_clip.image_transform(SIZE, is_train=False), open_clip.SimpleTokenizer()


# -- tiny step components for recipes --------------------------------------------------------


class TinyDataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str
    category: str | None = None


class TinyMVTec:
    """A dataset of one MVTec-layout category: train/good and the test tree."""

    def __init__(self, config: TinyDataConfig) -> None:
        self.root = Path(config.root)

    def samples(self, split: str):
        from defectkit.data.sample import Sample

        if split == "test":
            return mvtec_test_samples(self.root)
        if split == "train":
            images = sorted((self.root / "train" / NORMAL).glob("*.png"))
            return [
                Sample(
                    id=str(p.relative_to(self.root)), split="train", label=0, object_class=self.root.name, image_path=p
                )
                for p in images
            ]
        return []


class TinyDetector:
    """Writes noisy maps (``anomaly_maps``) and class/mask predictions (``predictions``)."""

    def __init__(self, config: None) -> None:
        self.config = config

    def detect(self, ctx) -> None:
        rng = np.random.default_rng(7)
        maps_dir = ctx.step_dir / "maps"
        masks_dir = ctx.step_dir / "masks"
        masks_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for sample in ctx.samples("test"):
            anomaly_map = make_map(sample.load_mask(), rng)
            stem = sample.image_path.stem
            (maps_dir / sample.defect_type).mkdir(parents=True, exist_ok=True)
            np.save(maps_dir / sample.defect_type / f"{stem}.npy", anomaly_map)
            mask_file = f"{sample.defect_type}_{stem}.png"
            Image.fromarray(((anomaly_map > 0.65) * 255).astype(np.uint8)).save(masks_dir / mask_file)
            # one deliberate confusion so per-class figures are not all 1
            prediction = "dent" if (sample.defect_type, stem) == ("scratch", "000") else sample.defect_type
            rows.append(
                {"id": sample.id, "label": sample.defect_type, "prediction": prediction, "mask": f"masks/{mask_file}"}
            )
        with open(ctx.step_dir / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "label", "prediction", "mask"])
            writer.writeheader()
            writer.writerows(rows)
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("predictions", ctx.step_dir / "predictions.csv")


class TinyGenerator:
    """'Generates' defect images by perturbing the real defective ones; writes metadata.jsonl."""

    def __init__(self, config: None) -> None:
        self.config = config

    def generate(self, ctx) -> None:
        rng = np.random.default_rng(3)
        out = ctx.step_dir / "images"
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        for k, sample in enumerate(ctx.samples("gen_train") * 3):
            pixels = np.asarray(sample.load_image()).astype(np.int16) + rng.integers(-25, 25, size=(SIZE, SIZE, 3))
            name = f"{k:03d}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out / name)
            lines.append(
                {"file": name, "defect_type": sample.defect_type, "prompt": f"a {sample.defect_type} on metal"}
            )
        (out / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        ctx.add_artifact("generated_images", out)


class TinyPlugin:
    """Registers the tiny dataset, detector and generator for one test."""

    @hookimpl
    def defectkit_datasets(self) -> list[Component]:
        return [Component("dataset", "tiny_mvtec", f"{__name__}:TinyMVTec", f"{__name__}:TinyDataConfig")]

    @hookimpl
    def defectkit_detectors(self) -> list[Component]:
        return [Component("detector", "tiny_detector", f"{__name__}:TinyDetector")]

    @hookimpl
    def defectkit_generators(self) -> list[Component]:
        return [Component("generator", "tiny_generator", f"{__name__}:TinyGenerator")]
