"""The ``decodiff`` trainer: the deviation UNet (and category classifier) under Accelerate, resumable."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F

from defectkit.errors import DataError
from defectkit.io import read_json, write_json
from defectkit.tensorfile import load_tensors
from defectkit.training import LossGuard, warmup_cosine
from defectkit_decodiff.config import DecoDiffModelConfig, DecoDiffTrainConfig
from defectkit_decodiff.diffusion import corrupt, cosine_alphas_cumprod, patch_masks
from defectkit_decodiff.model import (
    CategoryClassifier,
    Checkpoint,
    LatentCodec,
    build_unet,
    load_images,
    load_training_state,
    read_meta,
    save_checkpoint,
    to_model_range,
)

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best_checkpoint"  # validation_images: the checkpoint that scored best on the synthetic validation
BEST_FILE = "best.json"  # beside it: its step and validation figures (a resumed run compares with them)
VALIDATION_FILE = "validation_set.npz"  # the synthetic validation itself: detect picks its threshold on it


def save_validation_set(path, validation: dict) -> None:
    """The synthetic validation (uint8 images, masks, labels, class indices) as one ``.npz``, written atomically."""
    import numpy as np

    from defectkit.io import atomic_path

    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **{key: np.asarray(value) for key, value in validation.items()})


def load_validation_set(path) -> dict:
    """What :func:`save_validation_set` wrote: ``images`` (N, S, S, 3) uint8, ``masks``, ``labels``, ``classes``."""
    import numpy as np

    with np.load(path) as data:
        return {key: data[key] for key in ("images", "masks", "labels", "classes")}


def category_of(sample) -> str:
    """The class a sample conditions the UNet on (formats without categories share one class)."""
    return sample.object_class or "default"


def _step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    # one generator per (rank, step): a resumed run draws the same batches and masks it would have drawn
    return torch.Generator().manual_seed(seed * 1_000_003 + rank * 10_007 + step)


class DecoDiffTrainer:
    """Trains the deviation UNet on the good training images; writes the ``checkpoint`` artifact."""

    def __init__(self, config: DecoDiffTrainConfig) -> None:
        self.config = config
        #: the length the resumed checkpoint's run was planned for (differs when the run is trained longer)
        self.planned_before = config.steps

    def train(self, ctx) -> None:
        config = self.config
        accelerator = ctx.accelerator
        device = accelerator.device
        good = [s for s in ctx.samples("train") if s.label == 0]
        if not good:
            raise DataError("decodiff: the train split has no good (label 0) images to train on; check data:")
        good, held_out = self._hold_out(good)
        classes = sorted({category_of(s) for s in good})
        labels = torch.tensor([classes.index(category_of(s)) for s in good])
        # uint8 until a batch is used: all of MVTec AD at 256 px is 0.7 GB as uint8, 2.8 GB as floats
        images = torch.from_numpy(load_images(good, config.image_size, config.crop_size))

        codec = LatentCodec(config, device)
        # the encoder is frozen: encode every image once (and its mirror image) instead of every step
        latents = self._encode(codec, images)
        if config.hflip:
            latents = torch.cat([latents, self._encode(codec, images.flip(2))])
            labels = torch.cat([labels, labels])
        latents, labels = latents.to(device), labels.to(device)
        validation = self._validation_set(held_out, classes) if held_out else None
        if validation is None:
            del codec
        elif ctx.is_main_process:
            save_validation_set(ctx.step_dir / VALIDATION_FILE, validation)

        unet = build_unet(config, latents.shape[1], len(classes))
        optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, config.steps))
        path = ctx.step_dir / CHECKPOINT_DIR
        first = 0
        if ctx.resume and path.is_dir():  # written atomically: a folder that exists is complete
            first = self._resume(path, unet, optimizer, scheduler, classes)
            ctx.logger.info("decodiff: resumed from the checkpoint of step %d in %s", first, path)
            if self.planned_before != config.steps:
                # LambdaLR keeps only the step count: the warm-up + cosine is re-planned for the new length
                ctx.logger.info(
                    "decodiff: trained for %d steps, now %d: the warm-up + cosine schedule is re-planned for %d "
                    "steps, so from step %d the rate is what a %d-step run has there (%.3g of lr)",
                    self.planned_before, config.steps, config.steps, first, config.steps,
                    warmup_cosine(config.warmup_steps, config.steps)(first),
                )
        elif config.init_from:
            self._init_from(ctx, unet, classes)
        # the scheduler is stepped by hand once per optimizer step: prepare() would step it once per process
        unet, optimizer = accelerator.prepare(unet, optimizer)
        alphas_cumprod = cosine_alphas_cumprod(config.diffusion_steps).to(device)

        started = time.perf_counter()
        loss_value = float("nan")
        guard = LossGuard(f"step {ctx.step_id} (decodiff)")
        unet.train()
        for step in ctx.progress(range(first, config.steps), total=config.steps - first, description="decodiff train", unit="steps"):
            generator = _step_generator(config.seed, accelerator.process_index, step)
            total = 0.0
            for micro in range(config.grad_accumulation):
                sync = micro == config.grad_accumulation - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(unet):
                    loss = self._loss(unet, latents, labels, alphas_cumprod, generator) / config.grad_accumulation
                    accelerator.backward(loss)
                total += float(loss.detach())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = total
            done = step + 1
            guard.check(loss_value, done)
            if done % config.log_every == 0 or done == config.steps:
                ctx.log_scalar("decodiff/loss", loss_value, done)
                ctx.log_scalar("decodiff/lr", scheduler.get_last_lr()[0], done)
            if done % config.checkpoint_every == 0 and done < config.steps:
                self._save(ctx, path, classes, latents.shape[1], done, unet, optimizer, scheduler, None)
                ctx.logger.info("decodiff: checkpoint at step %d of %d (loss %.4g) in %s", done, config.steps, loss_value, path)
                if validation is not None:
                    self._validate(ctx, validation, codec, unet, classes, latents.shape[1], done)
                    unet.train()
        seconds = time.perf_counter() - started

        classifier = None
        if config.classifier and len(classes) > 1 and ctx.is_main_process:
            classifier = self._train_classifier(images, labels[: len(images)].cpu(), len(classes), device)
        self._save(ctx, path, classes, latents.shape[1], config.steps, unet, optimizer, scheduler, classifier)
        best = None
        if validation is not None:
            best = self._validate(ctx, validation, codec, unet, classes, latents.shape[1], config.steps, classifier)
        if ctx.is_main_process:
            figures = {
                "train_images": len(good),
                "classes": len(classes),
                "processes": accelerator.num_processes,
                "steps": config.steps,
                "final_loss": round(loss_value, 6),
                "train_seconds": round(seconds, 1),
            }
            if best is not None:
                figures.update(
                    validation_images=len(held_out),
                    best_step=best["step"],
                    best_val_image_auroc=best["image_auroc"],
                    best_val_pixel_auroc=best["pixel_auroc"],
                )
            ctx.log_metrics(figures)
        ctx.add_artifact("checkpoint", path)
        if best is not None:
            ctx.add_artifact("best_checkpoint", ctx.step_dir / BEST_DIR)
            ctx.add_artifact("validation_set", ctx.step_dir / VALIDATION_FILE)

    # -- the synthetic validation --------------------------------------------------------

    def _hold_out(self, good: list) -> tuple[list, list]:
        """The training images and the held-out validation images (a seeded choice, every category's share)."""
        count = self.config.validation_images
        if count == 0:
            return good, []
        if len(good) - count < 2:
            raise DataError(
                f"decodiff: validation_images: {count} leaves {len(good) - count} of the {len(good)} good training "
                "images to train on; hold out fewer (or 0: no validation)"
            )
        order = torch.randperm(len(good), generator=torch.Generator().manual_seed(self.config.seed + 7919)).tolist()
        chosen = set(order[:count])
        train = [s for i, s in enumerate(good) if i not in chosen]
        held_out = [s for i, s in enumerate(good) if i in chosen]
        lost = sorted({category_of(s) for s in held_out} - {category_of(s) for s in train})
        if lost:
            raise DataError(
                f"decodiff: validation_images: {count} holds out every good image of {', '.join(lost)}, so the "
                "model would not learn it; hold out fewer"
            )
        return train, held_out

    def _validation_set(self, held_out: list, classes: list[str]) -> dict:
        """The held-out good images, each as it is and with a pasted defect: images, masks, labels, classes."""
        from defectkit.data.pasted import validation_set

        config = self.config
        crops = load_images(held_out, config.image_size, config.crop_size)
        images, masks, labels = validation_set(crops, config.seed)
        known = [classes.index(category_of(s)) for s in held_out]  # _hold_out kept every category in training
        return {"images": images, "masks": masks, "labels": labels, "classes": torch.tensor(known * 2)}

    @torch.no_grad()
    def _validate(self, ctx, validation: dict, codec, unet, classes, channels, step, classifier=None) -> dict | None:
        """Score the validation set with the current weights; keep them as best_checkpoint when they score best."""
        from defectkit_decodiff.config import DecoDiffDetectConfig
        from defectkit_decodiff.detector import AnomalyScorer, score_validation, validation_aurocs

        accelerator = ctx.accelerator
        best_path, best_file = ctx.step_dir / BEST_DIR, ctx.step_dir / BEST_FILE
        best = read_json(best_file) if best_file.is_file() and best_path.is_dir() else None
        if ctx.is_main_process:
            model = accelerator.unwrap_model(unet).eval()
            model_config = DecoDiffModelConfig(**self.config.model_dump(include=set(DecoDiffModelConfig.model_fields)))
            checkpoint = Checkpoint(model_config, classes, channels, step, model, classifier)
            scorer = AnomalyScorer(checkpoint, DecoDiffDetectConfig(), accelerator.device, codec)
            maps, scores = score_validation(scorer, validation, 16)
            image, pixel = (round(figure, 4) for figure in validation_aurocs(validation, maps, scores))
            ctx.log_scalar("decodiff/val_image_auroc", image, step)
            ctx.log_scalar("decodiff/val_pixel_auroc", pixel, step)
            figure = round((image + pixel) / 2, 4)
            kept = best is None or figure > best["score"]
            ctx.logger.info(
                "decodiff: synthetic validation at step %d: image AUROC %.3f, pixel AUROC %.3f%s",
                step, image, pixel, " (best so far: kept)" if kept else f" (best: step {best['step']})",
            )
            if kept:
                state = {"step": step, "planned_steps": self.config.steps}
                save_checkpoint(best_path, model_config, classes, channels, step, model, state, classifier)
                best = {"step": step, "image_auroc": image, "pixel_auroc": pixel, "score": figure}
                write_json(best_file, best)
        accelerator.wait_for_everyone()
        return best

    @staticmethod
    def _encode(codec: LatentCodec, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` images -> latents on the CPU, a batch at a time."""
        return torch.cat(
            [
                codec.encode(to_model_range(images[i : i + batch].numpy(), codec.device)).cpu()
                for i in range(0, len(images), batch)
            ]
        )

    def _loss(self, unet, latents, labels, alphas_cumprod, generator) -> torch.Tensor:
        config = self.config
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator).to(latents.device)
        x0, y = latents[index], labels[index]
        t = torch.randint(0, config.diffusion_steps, (config.batch_size,), generator=generator).to(latents.device)
        noise_mask, shuffle_mask, source = patch_masks(
            (x0.shape[0], x0.shape[2], x0.shape[3]),
            config.mask_ratio_max,
            config.patch_sizes,
            config.shuffle_share,
            generator,
            x0.device,
        )
        x_t, deviation = corrupt(x0, t, alphas_cumprod, noise_mask, shuffle_mask, source, generator)
        return F.mse_loss(unet(x_t, t, y), deviation)

    def _init_from(self, ctx, unet, classes: list[str]) -> None:
        """Start from another run's decodiff weights (fine-tuning on new data); optimizer and schedule start anew."""
        from safetensors.torch import load_file

        from defectkit.rundir import RunDirectory

        source = RunDirectory.from_reference(self.config.init_from).artifact("checkpoint", producers=("decodiff",))
        meta = read_meta(source)
        if meta["classes"] != classes:
            raise DataError(
                f"decodiff: init_from {source} was trained on categories {meta['classes']}, this data has "
                f"{classes}; the class embedding would not fit"
            )
        try:
            unet.load_state_dict(load_file(source / "model.safetensors"))
        except RuntimeError as exc:  # another UNet size, latent or channel count
            first = str(exc).strip().splitlines()[0]
            raise DataError(f"decodiff: init_from {source}: its UNet does not fit this one's options ({first})") from None
        ctx.logger.info("decodiff: initialised from the weights of %s (trained %d steps)", source, meta["step"])

    def _resume(self, path, unet, optimizer, scheduler, classes: list[str]) -> int:

        meta = read_meta(path)
        if meta["classes"] != classes:
            raise DataError(
                f"decodiff: the checkpoint in {path} was trained on categories {meta['classes']}, the data now has "
                f"{classes}; resume with the same data: block or start a new run"
            )
        unet.load_state_dict(load_tensors(path / "model.safetensors"))
        state = load_training_state(path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.planned_before = int(state.get("planned_steps", self.config.steps))
        return int(state["step"])

    def _save(self, ctx, path, classes, channels, step, unet, optimizer, scheduler, classifier) -> None:
        accelerator = ctx.accelerator
        accelerator.wait_for_everyone()
        if ctx.is_main_process:
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "planned_steps": self.config.steps,
            }
            model_config = DecoDiffModelConfig(**self.config.model_dump(include=set(DecoDiffModelConfig.model_fields)))
            save_checkpoint(
                path, model_config, classes, channels, step, accelerator.unwrap_model(unet), state, classifier
            )
        accelerator.wait_for_everyone()

    def _train_classifier(self, images, labels, num_classes: int, device) -> CategoryClassifier:
        generator = torch.Generator().manual_seed(self.config.seed)
        classifier = CategoryClassifier(num_classes).to(device)
        optimizer = torch.optim.AdamW(classifier.parameters(), lr=1e-3)
        for _ in range(self.config.classifier_steps):
            index = torch.randint(0, len(images), (min(32, len(images)),), generator=generator)
            logits = classifier(to_model_range(images[index].numpy(), device))
            loss = F.cross_entropy(logits, labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return classifier.eval()
