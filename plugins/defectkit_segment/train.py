"""The ``segmenter`` trainer and detector: a small U-Net trained on image-mask pairs.

Training pairs are real defects with their masks, good images with empty masks,
and (optionally) the generated pairs of an earlier generate step. The detector
writes the per-pixel defect probability in the eval-maps layout, so the
``detection`` metric scores it like any detector, and reports IoU and Dice at the
threshold chosen when training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from defectkit.data.sample import NORMAL, Sample
from defectkit.errors import DataError
from defectkit.io import atomic_path, write_json
from defectkit.stats import first_per_class
from defectkit.training import LossGuard
from defectkit_segment.config import SegmentDetectConfig, SegmenterConfig, SegmenterModelConfig
from defectkit_segment.model import UNet

MODEL_FILE = "model.safetensors"
META_FILE = "segmenter.json"
RESUME_FILE = "resume.safetensors"


@dataclass
class Pairs:
    """Images (N×3×S×S uint8) and masks (N×1×S×S bool) at the training size, defective ones flagged."""

    images: torch.Tensor
    masks: torch.Tensor
    defective: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def cat(*parts: Pairs) -> Pairs:
        return Pairs(*(torch.cat([getattr(p, f) for p in parts]) for f in ("images", "masks", "defective")))


def load_pairs(samples: list[Sample], size: int, who: str) -> Pairs:
    """Images and masks of ``samples`` resized to ``size``; a defect without a mask is a DataError naming it."""
    from PIL import Image

    images, masks = [], []
    for sample in samples:
        mask = sample.load_mask()
        if mask is None:
            raise DataError(
                f"{who}: {sample.image_path or sample.id} ({sample.defect_type}) has no mask; "
                "a segmenter trains on image-mask pairs only"
            )
        image = sample.load_image()
        if mask.shape != (image.height, image.width):
            raise DataError(
                f"{who}: the mask of {sample.image_path or sample.id} is {mask.shape[1]}x{mask.shape[0]}, "
                f"its image {image.width}x{image.height}"
            )
        images.append(np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8))
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
        masks.append(np.asarray(resized) >= 128)
    if not samples:
        return Pairs(
            torch.zeros(0, 3, size, size, dtype=torch.uint8),
            torch.zeros(0, 1, size, size, dtype=torch.bool),
            torch.zeros(0, dtype=torch.bool),
        )
    return Pairs(
        torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(np.stack(masks))[:, None],
        torch.tensor([s.label == 1 for s in samples]),
    )


def real_samples(ctx: Any, config: SegmenterModelConfig, who: str) -> tuple[list[Sample], list[Sample]]:
    """The real defective samples of ``defect_split`` and the good ones of ``good_split``."""
    defects = [s for s in ctx.samples(config.defect_split) if s.label == 1]
    goods = [s for s in ctx.samples(config.good_split) if s.label == 0]
    if config.max_good is not None:
        goods = goods[: config.max_good]
    if not defects:
        raise DataError(
            f"{who}: split {config.defect_split!r} has no defective image to train on "
            "(with an MVTec-like dataset set data.split.protocol: generation and defect_split: gen_train)"
        )
    return defects, goods


def generated_samples(root: Path, per_class: int | None, who: str) -> list[Sample]:
    """The generated pairs of ``root`` (every one needs a mask), at most ``per_class`` per defect type."""
    from defectkit.generated import read_generated

    samples = [g for g in read_generated(root) if g.defect_type != NORMAL]
    without = [g for g in samples if g.mask_path is None]
    if without:
        raise DataError(
            f"{who}: {root} has images without masks ({without[0].image_path.name} ...); "
            "use a generator that writes masks (copy_paste, defectfill)"
        )
    return first_per_class(samples, per_class)


def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and quarter turns, the same for an image and its mask (defects have no orientation)."""
    n = x.shape[0]
    for dim, draw in ((-1, torch.rand(n, generator=generator)), (-2, torch.rand(n, generator=generator))):
        flip = draw < 0.5
        x[flip], y[flip] = x[flip].flip(dim), y[flip].flip(dim)
    turns = torch.randint(0, 4, (n,), generator=generator)
    for k in (1, 2, 3):
        pick = turns == k
        if pick.any():
            x[pick], y[pick] = torch.rot90(x[pick], k, (-2, -1)), torch.rot90(y[pick], k, (-2, -1))
    return x, y


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice over the batch: BCE alone under-weights small defects."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


class Batches:
    """Batches of ``batch_size`` with a fixed share of defective pairs, from a seeded generator.

    The defective and good pairs are each walked in shuffled passes, so every arm
    of a comparison takes the same number of steps whatever its size.
    """

    def __init__(self, pairs: Pairs, batch_size: int, defect_fraction: float, generator: torch.Generator) -> None:
        self.pairs, self.generator = pairs, generator
        self.groups = [torch.nonzero(pairs.defective).flatten(), torch.nonzero(~pairs.defective).flatten()]
        n_defect = round(batch_size * defect_fraction)
        if len(self.groups[1]) == 0:
            n_defect = batch_size
        if len(self.groups[0]) == 0:
            n_defect = 0
        self.counts = [n_defect, batch_size - n_defect]
        self.orders = [self._shuffle(g) for g in self.groups]
        self.positions = [0, 0]

    def _shuffle(self, group: torch.Tensor) -> torch.Tensor:
        return group[torch.randperm(len(group), generator=self.generator)] if len(group) else group

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked = []
        for i, count in enumerate(self.counts):
            while count > 0:
                if self.positions[i] >= len(self.orders[i]):
                    self.orders[i], self.positions[i] = self._shuffle(self.groups[i]), 0
                take = self.orders[i][self.positions[i] : self.positions[i] + count]
                self.positions[i] += len(take)
                count -= len(take)
                picked.append(take)
        index = torch.cat(picked)
        x = self.pairs.images[index].float() / 255.0
        y = self.pairs.masks[index].float()
        return augment(x, y, self.generator)


def fit(
    ctx: Any,
    config: SegmenterModelConfig,
    pairs: Pairs,
    seed: int,
    tag: str,
    checkpoint: tuple[Path, int] | None = None,
) -> UNet:
    """Train a fresh U-Net (initial weights from ``seed``) for ``config.steps`` steps on ``pairs``.

    ``checkpoint`` (folder, every): save a resumable state there every so many
    steps and continue from it when the step is resumed.
    """
    torch.manual_seed(seed)  # the same initial weights for every arm of a seed
    model = UNet(config.encoder, config.pretrained, config.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    generator = torch.Generator().manual_seed(seed)
    batches = Batches(pairs, config.batch_size, config.defect_fraction, generator)
    start = 0
    if checkpoint is not None and ctx.resume and (checkpoint[0] / RESUME_FILE).is_file():
        start = _load_resume(checkpoint[0] / RESUME_FILE, model, optimizer, scheduler, generator)
        # the batch order continues from the restored generator state, not from the first pass
        batches.orders = [batches._shuffle(g) for g in batches.groups]
    model, optimizer = ctx.accelerator.prepare(model, optimizer)
    device = ctx.accelerator.device
    guard = LossGuard(f"step {ctx.step_id} (segmenter {tag})")
    model.train()
    running: list[float] = []
    for step in ctx.progress(range(start, config.steps), total=config.steps - start, description=tag, unit="steps"):
        x, y = batches.next()
        loss = seg_loss(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        ctx.accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        guard.check(value, step + 1)
        running.append(value)
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            ctx.log_scalar(f"{tag}/loss", float(np.mean(running)), step + 1)
            running = []
        if checkpoint is not None and (step + 1) % checkpoint[1] == 0 and step + 1 < config.steps:
            _save_resume(
                checkpoint[0] / RESUME_FILE,
                ctx.accelerator.unwrap_model(model),
                optimizer,
                scheduler,
                generator,
                step + 1,
            )
    model = ctx.accelerator.unwrap_model(model)
    model.eval()
    return model


def _save_resume(path: Path, model, optimizer, scheduler, generator, step: int) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["generator"] = generator.get_state()
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"step": str(step), "scheduler": json.dumps(scheduler.state_dict())}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_resume(path: Path, model, optimizer, scheduler, generator) -> int:
    from safetensors import safe_open

    from defectkit.tensorfile import load_tensors

    tensors = load_tensors(path)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    scheduler.load_state_dict(json.loads(meta["scheduler"]))
    generator.set_state(tensors["generator"])
    return int(meta["step"])


@torch.no_grad()
def predict(model: UNet, samples: list[Sample], size: int, device: Any, batch: int = 32) -> list[np.ndarray]:
    """Per-pixel defect probability for each sample, at the sample's own image size."""
    from PIL import Image

    maps: list[np.ndarray] = []
    model = model.to(device)
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        images = [s.load_image() for s in chunk]
        x = torch.from_numpy(
            np.stack([np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8) for im in images])
        )
        x = x.permute(0, 3, 1, 2).float().div(255.0).to(device)
        probabilities = torch.sigmoid(model(x))
        for image, p in zip(images, probabilities, strict=True):
            full = F.interpolate(p[None], size=(image.height, image.width), mode="bilinear", align_corners=False)
            maps.append(full[0, 0].cpu().numpy().astype(np.float32))
    return maps


def overlap(maps: list[np.ndarray], masks: list[np.ndarray], threshold: float) -> dict[str, float]:
    """IoU and Dice of ``maps > threshold`` against the masks, over all pixels of the set together."""
    inter = union = total = 0
    for m, k in zip(maps, masks, strict=True):
        pred = m > threshold
        inter += int(np.logical_and(pred, k).sum())
        union += int(np.logical_or(pred, k).sum())
        total += int(pred.sum()) + int(k.sum())
    return {"iou": inter / union if union else 1.0, "dice": 2 * inter / total if total else 1.0}


def choose_threshold(maps: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """The threshold in 0.05 ... 0.95 with the best Dice on these maps."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    return float(max(grid, key=lambda t: overlap(maps, masks, t)["dice"]))


def save_model(folder: Path, model: UNet, config: SegmenterModelConfig, extra: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / MODEL_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json(
        folder / META_FILE,
        {"encoder": config.encoder, "width": config.width, "image_size": config.image_size, **extra},
    )


def load_model(folder: Path) -> tuple[UNet, dict[str, Any]]:
    from defectkit.tensorfile import load_tensors

    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise DataError(f"{folder}: no {META_FILE}; not a segmenter folder, or its train step did not finish")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    # pretrained weights are in the checkpoint: never download them again to rebuild the model
    model = UNet(meta["encoder"], False, meta["width"])
    model.load_state_dict(load_tensors(folder / MODEL_FILE))
    model.eval()
    return model, meta


class SegmenterTrainer:
    """Train a segmenter on real image-mask pairs and, when an earlier step generated some, generated ones."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()

    def train(self, ctx: Any) -> None:
        c = self.config
        who = f"step {ctx.step_id} (segmenter)"
        defects, goods = real_samples(ctx, c, who)
        generated: list[Sample] = []
        root = ctx.artifact("generated_images", required=False) if c.use_generated else None
        if root is not None:
            generated = generated_samples(root, None, who)
        pairs = Pairs.cat(*(load_pairs(s, c.image_size, who) for s in (defects, goods, generated)))
        ctx.logger.info(
            f"segmenter: {len(defects)} real defects, {len(goods)} good images, {len(generated)} generated pairs"
        )
        folder = ctx.step_dir / "segmenter"
        model = fit(ctx, c, pairs, ctx.seed, "segmenter", checkpoint=(ctx.step_dir / "resume", c.checkpoint_every))
        val = [s for s in ctx.samples(c.val_split) if s.label == 1 and s.load_mask() is not None]
        source = c.val_split if val else "train"
        chosen = val + [s for s in ctx.samples(c.val_split) if s.label == 0] if val else defects + goods
        maps = predict(model, chosen, c.image_size, ctx.device)
        threshold = choose_threshold(maps, [s.load_mask() for s in chosen])
        save_model(folder, model, c, {"threshold": threshold, "threshold_split": source})
        ctx.add_artifact("segmenter", folder)
        ctx.log_metrics(
            {
                "real_defects": len(defects),
                "good_images": len(goods),
                "generated_pairs": len(generated),
                "threshold": threshold,
                "threshold_split": source,
            }
        )


class SegmenterDetector:
    """Per-pixel defect probabilities of the ``segmenter`` artifact, written in the eval-maps layout."""

    def __init__(self, config: SegmentDetectConfig | None = None) -> None:
        self.config = config or SegmentDetectConfig()

    def detect(self, ctx: Any) -> None:
        from defectkit.anomaly_maps import map_names, save_map, write_scores
        from defectkit.overlays import pick_overlays, save_overlay

        model, meta = load_model(ctx.artifact("segmenter"))
        samples = ctx.samples(self.config.split)
        if not samples:
            raise DataError(f"step {ctx.step_id} (segmenter): split {self.config.split!r} has no image")
        names = map_names(samples, f"step {ctx.step_id} (segmenter)")
        maps = predict(model, samples, meta["image_size"], ctx.device)
        maps_dir = ctx.step_dir / "anomaly_maps"
        for name, anomaly_map in zip(ctx.progress(names, len(names), "maps", unit="images"), maps, strict=True):
            save_map(maps_dir, name, anomaly_map)
        scores = [float(m.max()) for m in maps]
        write_scores(ctx.step_dir / "scores.csv", names, scores)
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("scores", ctx.step_dir / "scores.csv")
        masks = [s.load_mask() for s in samples]
        figures: dict[str, Any] = {"threshold": meta["threshold"], "threshold_split": meta["threshold_split"]}
        known = [i for i, m in enumerate(masks) if m is not None]
        if known:
            figures.update(overlap([maps[i] for i in known], [masks[i] for i in known], meta["threshold"]))
        ctx.log_metrics(figures)
        overlay_dir = ctx.step_dir / "overlays"
        overlay_dir.mkdir(parents=True, exist_ok=True)
        for i in pick_overlays([s.defect_type for s in samples], [s.label for s in samples], self.config.overlays):
            path = overlay_dir / f"{i:04d}.png"
            image = np.asarray(samples[i].load_image())
            save_overlay(path, image, maps[i], masks[i], (0.0, 1.0), f"{names[i]}: max p {scores[i]:.2f}")
            ctx.add_figure(path, f"segmenter: {names[i]}")
