"""The ``dinov3_multitask`` trainer: staged training (frozen backbone, then fine-tuning) of the multi-task model."""

from __future__ import annotations

import math
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch.utils.data import DataLoader, WeightedRandomSampler

from defectkit.errors import DataError, DefectkitError
from defectkit_dinov3.augment import PairedAugment
from defectkit_dinov3.checkpoint import load_checkpoint, load_training_state, model_meta, save_checkpoint
from defectkit_dinov3.config import MultiTaskTrainConfig
from defectkit_dinov3.data import DefectDataset
from defectkit_dinov3.losses import DynamicWeights, UncertaintyWeights, class_weights, focal_loss, segmentation_loss
from defectkit_dinov3.model import MultiTaskDefectModel

CHECKPOINT_DIR = "checkpoint"
#: the epoch with the best validation accuracy (weights and model.json, no training state), beside the last
BEST_DIR = "checkpoint_best"


def build_backbone(config: MultiTaskTrainConfig):
    """The backbone from the named ``model_backend`` component, its options validated like a recipe's."""
    from defectkit.plugins import get_registry

    component = get_registry().get("model_backend", config.backbone.use)
    try:
        options = component.build_config(config.backbone.with_)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DefectkitError(f"dinov3_multitask: backbone.with.{where}: {first['msg']}") from None
    return component.load_factory()(options)


def warmup_cosine(steps_per_epoch: int, epochs: int):
    """LambdaLR factor: linear warm-up over the first epoch, then cosine decay to 0."""
    total, warmup = steps_per_epoch * epochs, steps_per_epoch if epochs > 1 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


class MultiTaskTrainer:
    """Trains on ``ctx.samples("train")`` and hands the checkpoint folder on as the ``checkpoint`` artifact."""

    def __init__(self, config: MultiTaskTrainConfig) -> None:
        self.config = config

    def train(self, ctx) -> None:
        path = ctx.step_dir / CHECKPOINT_DIR
        # one process trains: the stages re-freeze parameters, which a DDP wrapper does not allow
        if ctx.is_main_process:
            self._train(ctx, path)
        ctx.add_artifact("checkpoint", path)
        if (ctx.step_dir / BEST_DIR).is_dir():
            ctx.add_artifact("best_checkpoint", ctx.step_dir / BEST_DIR)

    def _train(self, ctx, path: Path) -> None:
        config = self.config
        samples = ctx.samples("train")
        if not samples:
            raise DataError("dinov3_multitask: the train split is empty; check the recipe's data: block")
        counts = Counter(s.defect_type for s in samples)
        classes = sorted(counts)
        device = torch.device(ctx.device)

        state = load_training_state(path) if ctx.resume else None
        if state is not None:
            loaded = load_checkpoint(path, device, config.dropout)
            model, classes = loaded.model, loaded.classes
            ctx.logger.info("dinov3_multitask: resuming after epoch %d from %s", state["epoch"], path)
        else:
            model = MultiTaskDefectModel(build_backbone(config), len(classes), config.decoder_channels, config.dropout)
        model.to(device)
        meta = model_meta(model, classes, config.image_size, config.decoder_channels)

        weights = class_weights([counts[c] for c in classes]).to(device) if config.balance == "loss_weights" else None
        weighting = (
            UncertaintyWeights().to(device)
            if config.weighting == "uncertainty"
            else DynamicWeights(config.switch_epoch, config.classification_weights, config.segmentation_weights)
        )
        if state is not None and isinstance(weighting, UncertaintyWeights):
            weighting.load_state_dict(state["weighting"])

        dataset = DefectDataset(
            samples, classes, config.image_size, PairedAugment(config.augment), cache=config.cache_images
        )
        sampler = None
        if config.balance == "sampler":
            per_sample = [1.0 / counts[s.defect_type] for s in samples]
            sampler = WeightedRandomSampler(per_sample, num_samples=len(samples), replacement=True)
        loader = DataLoader(
            dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=False
        )
        validation = ctx.samples("val")
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if config.mixed_precision and device.type == "cuda"
            else nullcontext()
        )

        started = time.perf_counter()
        epoch = 0
        done = state["epoch"] if state is not None else 0
        last: dict[str, float] = {}
        metrics_extra: dict[str, Any] = {}
        best = state.get("best", {"val_accuracy": -1.0, "epoch": 0}) if state is not None else {"val_accuracy": -1.0, "epoch": 0}
        for stage_index, stage in enumerate(config.stages):
            stage_end = epoch + stage.epochs
            if done >= stage_end:
                epoch = stage_end
                continue
            if config.pseudo_masks != "none" and stage_index > 0:
                pseudo = pseudo_masks(model, dataset, config, device)
                ctx.logger.info("dinov3_multitask: %s pseudo-masks for %d images without masks", config.pseudo_masks, pseudo)
                metrics_extra["pseudo_masks"] = pseudo
            model.set_backbone_trainable(not stage.freeze_backbone)
            steps_per_epoch = math.ceil(len(loader) / config.grad_accumulation)
            optimizer, scheduler = self._optimizer(model, weighting, stage, steps_per_epoch)
            if state is not None and state.get("stage") == stage_index and done > epoch:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            epoch = max(epoch, done)
            ctx.logger.info(
                "dinov3_multitask: stage %d (%s backbone, lr %g), epochs %d-%d",
                stage_index + 1,
                "frozen" if stage.freeze_backbone else "trainable",
                stage.lr,
                epoch + 1,
                stage_end,
            )
            while epoch < stage_end:
                last = self._epoch(model, loader, optimizer, scheduler, weighting, weights, epoch, autocast, device)
                for name, value in last.items():
                    ctx.log_scalar(name, value, epoch)  # the engine prefixes the step name
                if validation:
                    last["val_accuracy"] = accuracy(model, validation, classes, config, device)
                    ctx.log_scalar("val_accuracy", last["val_accuracy"], epoch)
                epoch += 1
                if validation and last["val_accuracy"] > best["val_accuracy"]:
                    # strictly better only: on a tie the earlier epoch stays (less fitted to the training set)
                    best = {"val_accuracy": last["val_accuracy"], "epoch": epoch}
                    save_checkpoint(ctx.step_dir / BEST_DIR, model, {**meta, "epoch": epoch, **best})
                training = {
                    "epoch": epoch,
                    "stage": stage_index,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best": best,
                }
                if isinstance(weighting, UncertaintyWeights):
                    training["weighting"] = weighting.state_dict()
                save_checkpoint(path, model, meta, training)
                ctx.logger.info(
                    "dinov3_multitask: epoch %d  %s", epoch, "  ".join(f"{k}={v:.4f}" for k, v in last.items())
                )

        metrics: dict[str, Any] = {
            "epochs": epoch,
            "train_images": len(samples),
            "classes": len(classes),
            "seconds": round(time.perf_counter() - started, 1),
        }
        metrics.update({k: round(v, 4) for k, v in last.items() if k in ("accuracy", "loss", "val_accuracy")})
        metrics.update(metrics_extra)
        if validation:
            metrics.update(best_val_accuracy=round(best["val_accuracy"], 4), best_epoch=best["epoch"])
        if config.onnx:
            from defectkit_dinov3.export import export_onnx

            export_onnx(model, path / "model.onnx", config.image_size)
        ctx.log_metrics(metrics)

    def _optimizer(self, model: MultiTaskDefectModel, weighting, stage, steps_per_epoch: int):
        heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
        groups: list[dict[str, Any]] = [{"params": heads, "lr": stage.lr}]
        if not stage.freeze_backbone:
            groups.append({"params": list(model.backbone.parameters()), "lr": stage.backbone_lr or stage.lr})
        if isinstance(weighting, UncertaintyWeights):
            # the log-variances are not decayed: weight decay would pull every task weight towards 1
            groups.append({"params": list(weighting.parameters()), "lr": stage.lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps_per_epoch, stage.epochs))
        return optimizer, scheduler

    def _epoch(self, model, loader, optimizer, scheduler, weighting, weights, epoch, autocast, device):
        config = self.config
        model.train()
        totals = Counter()
        seen = correct = 0
        batches = len(loader)
        optimizer.zero_grad(set_to_none=True)
        for index, (images, masks, has_mask, targets, defects) in enumerate(loader):
            images, masks, has_mask = images.to(device), masks.to(device), has_mask.to(device)
            targets, defects = targets.to(device), defects.to(device).float()
            with autocast:
                out = model(images)
            class_logits, defect_logit, mask_logits = (
                out.class_logits.float(),
                out.defect_logit.float(),
                out.mask_logits.float(),
            )
            gamma = config.focal_gamma if config.classification_loss == "focal" else 0.0
            cls_loss = focal_loss(class_logits, targets, gamma, weights, config.label_smoothing)
            cls_loss = cls_loss + F.binary_cross_entropy_with_logits(defect_logit, defects)
            seg_loss = segmentation_loss(mask_logits, masks, has_mask)
            loss = weighting.combine(cls_loss, seg_loss, epoch)
            # the last group of an epoch may be short: each of its micro-batches weighs 1/len(group)
            group_start = index - index % config.grad_accumulation
            group_size = min(config.grad_accumulation, batches - group_start)
            (loss / group_size).backward()
            if index - group_start == group_size - 1:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            batch = images.shape[0]
            totals["loss"] += loss.item() * batch
            totals["classification_loss"] += cls_loss.item() * batch
            totals["segmentation_loss"] += seg_loss.item() * batch
            correct += int((class_logits.argmax(1) == targets).sum())
            seen += batch
        figures = {name: value / seen for name, value in totals.items()}
        cls_weight, seg_weight = weighting.weights(epoch)
        figures.update(accuracy=correct / seen, classification_weight=cls_weight, segmentation_weight=seg_weight)
        return figures


@torch.no_grad()
def pseudo_masks(model: MultiTaskDefectModel, dataset: DefectDataset, config, device) -> int:
    """Give every defective training image without a mask a thresholded map; returns how many.

    The map is the CAM of the image's class (``pseudo_masks: cam``) or the backbone's CLS attention
    (``attention``). Computed on the un-augmented image, so the pseudo-mask is augmented together with
    the image afterwards.
    """
    model.eval()
    indices = dataset.without_mask()
    for start in range(0, len(indices), config.batch_size):
        chunk = indices[start : start + config.batch_size]
        images = torch.stack([dataset.load(i)[0] for i in chunk]).float().div(255.0).to(device)
        classes = torch.tensor([dataset.index[dataset.samples[i].defect_type] for i in chunk], device=device)
        if config.pseudo_masks == "attention":
            cams = model.attention_map(images).cpu()
        else:
            cams = model.class_activation_map(images, classes).cpu()
        for i, cam in zip(chunk, cams, strict=True):
            dataset.pseudo_masks[i] = (cam > config.cam_threshold)[None]
    return len(indices)


@torch.no_grad()
def accuracy(model, samples, classes, config: MultiTaskTrainConfig, device) -> float:
    """Top-1 accuracy on samples whose class the model knows."""
    model.eval()
    loader = DataLoader(DefectDataset(samples, classes, config.image_size, cache=False), batch_size=config.batch_size)
    correct = seen = 0
    for images, _, _, targets, _ in loader:
        predicted = model(images.to(device)).class_logits.argmax(1).cpu()
        correct += int((predicted == targets).sum())
        seen += int((targets >= 0).sum())
    return correct / max(1, seen)
