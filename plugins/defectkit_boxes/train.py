"""The ``torchvision_boxes`` trainer: a torchvision detector on the data's boxes, under Accelerate, resumable."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from defectkit.errors import DataError
from defectkit.training import warmup_cosine
from defectkit_boxes.config import SMALL_MODEL, BoxTrainConfig, DetectorOptions
from defectkit_boxes.models import (
    FORMAT,
    build_model,
    load_training_state,
    predict,
    save_checkpoint,
    set_inference,
    to_tensor,
)
from defectkit_boxes.records import box_classes, ground_truth

CHECKPOINT_DIR = "checkpoint"


class BoxData:
    """Decoded once into memory (uint8 at the images' own size): the epochs then cost no decoding."""

    def __init__(self, samples, classes: list[str], where: str) -> None:
        self.images = [to_tensor(s.load_image()) for s in samples]
        self.targets = [tuple(torch.from_numpy(a) for a in ground_truth(s, classes, where)) for s in samples]

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int, generator: torch.Generator, rank: int, processes: int):
        """This process's batches of one epoch: a shuffled pass, each batch shared out between the processes."""
        order = torch.randperm(len(self), generator=generator).tolist()
        full = len(order) - len(order) % batch_size if len(order) > batch_size else len(order)
        for start in range(0, full, batch_size):
            yield order[start : start + batch_size][rank::processes]


def _augment(image: torch.Tensor, boxes: torch.Tensor, hflip: bool, vflip: bool, generator: torch.Generator):
    height, width = image.shape[-2:]
    if hflip and torch.rand((), generator=generator) < 0.5:
        image, boxes = (
            image.flip(-1),
            torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1),
        )
    if vflip and torch.rand((), generator=generator) < 0.5:
        image, boxes = (
            image.flip(-2),
            torch.stack([boxes[:, 0], height - boxes[:, 3], boxes[:, 2], height - boxes[:, 1]], 1),
        )
    return image, boxes.reshape(-1, 4)


def model_meta(c: DetectorOptions, classes: list[str]) -> dict[str, Any]:
    """What ``model.json`` records: enough to rebuild the architecture with random weights."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model": c.model,
        "weights": c.weights,
        "weights_backbone": c.weights_backbone,
        "classes": classes,
        "image_size": c.image_size,
    }
    if c.model == SMALL_MODEL:
        meta["small"] = c.small.model_dump()
    return meta


def batch_inputs(data: BoxData, indices: list[int], c: DetectorOptions, flips: torch.Generator, device):
    """The images (float in [0, 1]) and targets torchvision's detectors take in training mode."""
    inputs, targets = [], []
    for i in indices:
        image, boxes = _augment(data.images[i], data.targets[i][0], c.hflip, c.vflip, flips)
        inputs.append(image.to(device).float().div(255.0))
        # 1-based labels: torchvision detectors keep 0 for the background
        targets.append({"boxes": boxes.to(device), "labels": data.targets[i][1].to(device) + 1})
    return inputs, targets


@torch.no_grad()
def map50_on(model, samples, classes: list[str], device, where: str) -> float:
    """map50 of ``model`` (a torchvision detector) on ``samples``; NaN when they hold no box."""
    from defectkit_boxes.metrics import box_metrics
    from defectkit_boxes.models import LoadedBoxModel

    model.eval()
    set_inference(model, 0.05, 100)
    loaded = LoadedBoxModel(model, classes, {})
    predictions, truths = [], []
    for start in range(0, len(samples), 16):
        batch = samples[start : start + 16]
        predictions += predict(loaded, [to_tensor(s.load_image()) for s in batch], device)
        truths += [ground_truth(s, classes, where) for s in batch]
    if not any(len(b) for b, _ in truths):
        return float("nan")
    return float(np.round(box_metrics(predictions, truths, classes)["map50"], 6))


class BoxTrainer:
    """Trains on ``ctx.samples(train_split)``; hands the checkpoint folder on as the ``box_model`` artifact."""

    def __init__(self, config: BoxTrainConfig | None = None) -> None:
        self.config = config or BoxTrainConfig()

    def train(self, ctx) -> None:
        c = self.config
        if c.cpu_threads and ctx.device.type == "cpu":
            torch.set_num_threads(c.cpu_threads)
        accelerator = ctx.accelerator
        device = accelerator.device
        where = f"torchvision_boxes ({c.train_split})"
        samples = [s for s in ctx.samples(c.train_split) if c.include_good or s.label == 1]
        if not samples:
            raise DataError(f"{where}: the split is empty; check the recipe's data: block")
        classes = box_classes(samples, c.classes, where)
        validation = ctx.samples(c.val_split) if c.val_split else []
        if c.val_split and not validation:
            ctx.logger.warning(
                "torchvision_boxes: split %r is empty, so no val_map50; set data.split.val_fraction (e.g. 0.1)",
                c.val_split,
            )
        meta = model_meta(c, classes)
        path = ctx.step_dir / CHECKPOINT_DIR
        state = load_training_state(path) if ctx.resume else None
        if state is not None and state["classes"] != classes:
            raise DataError(
                f"torchvision_boxes: the checkpoint in {path} was trained on classes {state['classes']}, the data now "
                f"has {classes}; resume with the same data: block or start a new run"
            )
        # every process draws the same initial weights: the recipe seed was applied before this step
        model = build_model(meta, pretrained=state is None)
        data = BoxData(samples, classes, where)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps_per_epoch = max(1, len(data) // c.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(c.warmup_steps, c.epochs * steps_per_epoch)
        )
        first = 0
        if state is not None:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(path / "model.safetensors")))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            first = int(state["epoch"])
            ctx.logger.info("torchvision_boxes: resumed after epoch %d from %s", first, path)
        # the scheduler is stepped by hand once per optimizer step: prepare() would step it once per process
        model, optimizer = accelerator.prepare(model, optimizer)
        ctx.logger.info(
            "torchvision_boxes: %s, %d classes, %d training images (%d boxes), %d validation images",
            c.model,
            len(classes),
            len(data),
            sum(len(t[0]) for t in data.targets),
            len(validation),
        )

        started = time.perf_counter()
        step, figures = first * steps_per_epoch, {}
        for epoch in ctx.progress(range(first, c.epochs), total=c.epochs - first, description="box detector train"):
            model.train()
            # the order and the flips are seeded by the epoch: a resumed run draws what it would have drawn
            order = torch.Generator().manual_seed(ctx.seed * 1_000_003 + epoch)
            flips = torch.Generator().manual_seed(ctx.seed * 1_000_003 + epoch * 7919 + accelerator.process_index)
            totals: dict[str, float] = {}
            batches = 0
            for indices in data.batches(c.batch_size, order, accelerator.process_index, accelerator.num_processes):
                inputs, targets = batch_inputs(data, indices, c, flips, device)
                losses = model(inputs, targets)
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                step += 1
                batches += 1
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + float(value.detach())
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
                if step % c.log_every == 0:
                    ctx.log_scalar("loss", float(loss.detach()), step)
                    ctx.log_scalar("lr", scheduler.get_last_lr()[0], step)
            figures = {name: value / max(1, batches) for name, value in totals.items()}
            done = epoch + 1
            if validation and ctx.is_main_process:
                figures["val_map50"] = map50_on(
                    accelerator.unwrap_model(model), validation, classes, device, "torchvision_boxes (validation)"
                )
                ctx.log_scalar("val_map50", figures["val_map50"], done)
            ctx.logger.info(
                "torchvision_boxes: epoch %d  %s", done, "  ".join(f"{k}={v:.4f}" for k, v in figures.items())
            )
            if done % c.checkpoint_every == 0 or done == c.epochs:
                training = {
                    "epoch": done,
                    "classes": classes,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                }
                self._save(ctx, path, model, meta, training if done < c.epochs else None)
        metrics: dict[str, Any] = {
            "train_images": len(data),
            "train_boxes": sum(len(t[0]) for t in data.targets),
            "classes": len(classes),
            "epochs": c.epochs,
            "optimizer_steps": step,
            "processes": accelerator.num_processes,
            "train_seconds": round(time.perf_counter() - started, 1),
        }
        metrics.update({k: round(v, 4) for k, v in figures.items() if k in ("loss", "val_map50")})
        if ctx.is_main_process:
            ctx.log_metrics(metrics)
        ctx.add_artifact("box_model", path)

    @staticmethod
    def _save(ctx, path, model, meta, training) -> None:
        accelerator = ctx.accelerator
        accelerator.wait_for_everyone()
        if ctx.is_main_process:
            save_checkpoint(path, accelerator.unwrap_model(model), meta, training)
        accelerator.wait_for_everyone()
