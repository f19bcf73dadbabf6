"""The ``text2image_scratch`` trainer: a text-conditional pixel-space diffusion model from random weights.

One loop under Accelerate. Every random draw of an epoch (data order, flips,
dropped captions, noise, timesteps) comes from a generator seeded by
``(seed, epoch, micro-batch, process)``, never from the global random state, so
a run resumed from the checkpoint of epoch k repeats exactly what the
uninterrupted run did after epoch k (a test checks the weights are equal).

Per epoch: the mean loss is logged and compared with the best so far
(``plateau_patience`` epochs without improvement stop training or halve the
learning rate); every ``checkpoint_every`` epochs a checkpoint is written
(after checking the disk has room for it); every ``sample_every`` epochs a
grid of samples, one row per class, from the EMA weights.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from defectkit import io as dkio
from defectkit.errors import DataError, DefectkitError
from defectkit.tensorfile import load_tensors
from defectkit.training import LossGuard
from defectkit_text2image.config import Text2ImageTrainConfig
from defectkit_text2image.model import INFO, TextToImage, build_model, load_model
from defectkit_text2image.sampling import cpu_threads, generate, grid

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
_EPOCH = "epoch-{:05d}"


@dataclass
class TrainState:
    """What an epoch boundary needs to continue: saved in every checkpoint as JSON."""

    epoch: int = 0
    step: int = 0
    lr: float = 0.0
    best_loss: float = math.inf
    bad_epochs: int = 0
    lr_halvings: int = 0
    last_loss: float = math.nan
    stopped: str = ""


def prompt_for(template: str, defect: str, object_class: str) -> str:
    return template.format(defect=defect.replace("_", " ").replace("-", " "), object_class=object_class or "industrial")


def select_samples(samples, config: Text2ImageTrainConfig, where: str):
    """The samples of the configured classes; with no defective image at all (a captions set), every image."""
    present = sorted({s.defect_type for s in samples})
    if config.classes:
        missing = [c for c in config.classes if c not in present]
        if missing:
            raise DataError(
                f"{where}: classes {missing} have no images in split {config.split!r}; it has {present or 'none'}"
            )
        chosen = [s for s in samples if s.defect_type in config.classes]
    elif config.include_normal or not any(s.label == 1 for s in samples):
        chosen = list(samples)
    else:
        chosen = [s for s in samples if s.label == 1]
    if not chosen:
        raise DataError(f"{where}: split {config.split!r} has no images to train on; choose another split:")
    return chosen


def load_images(samples, config: Text2ImageTrainConfig, object_class: str, where: str):
    """Every image resized (shorter side) and centre-cropped to the resolution once: uint8 (N, C, R, R), and
    each image's prompts (several where the data has several captions: one is drawn per epoch)."""
    size = config.resolution
    pixels, prompts = [], []
    for sample in samples:
        image = sample.load_image().convert("L" if config.grayscale else "RGB")
        if config.crop == "defect":
            image = defect_crop(image, sample, config.defect_margin)
        scale = size / min(image.size)
        width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        array = np.asarray(image.crop((left, top, left + size, top + size)))
        pixels.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        captions = (sample.captions or ((sample.caption,) if sample.caption else ())) if config.prompts != "template" else ()
        if config.prompts == "caption" and not captions:
            raise DataError(f"{where}: sample {sample.id} has no caption (prompts: caption); use prompts: auto")
        prompts.append(list(captions) or [prompt_for(config.prompt_template, sample.defect_type, object_class)])
    return torch.from_numpy(np.stack(pixels)), prompts


def defect_crop(image: Image.Image, sample, margin: float) -> Image.Image:
    """The square around the sample's defect (mask, else boxes), ``margin`` times its larger side; a sample
    without a defect region keeps the whole image."""
    mask = sample.load_mask()
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    elif sample.boxes:
        x0 = min(b.x0 for b in sample.boxes)
        y0 = min(b.y0 for b in sample.boxes)
        x1 = max(b.x1 for b in sample.boxes)
        y1 = max(b.y1 for b in sample.boxes)
    else:
        return image
    width, height = image.size
    side = min(min(width, height), max(8, round(max(x1 - x0, y1 - y0) * margin)))
    left = int(np.clip((x0 + x1) / 2 - side / 2, 0, width - side))
    top = int(np.clip((y0 + y1) / 2 - side / 2, 0, height - side))
    return image.crop((left, top, left + side, top + side))


def check_free_disk(folder: Path, needed_bytes: int, min_free_mb: int) -> None:
    """Refuse to write ``needed_bytes`` under ``folder`` unless ``min_free_mb`` stay free afterwards."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free - needed_bytes < min_free_mb * 2**20:
        raise DefectkitError(
            f"{folder}: only {free / 2**20:.0f} MB free on its disk; a checkpoint needs about "
            f"{needed_bytes / 2**20:.0f} MB and min_free_disk_mb keeps {min_free_mb} MB free; "
            "free some space or lower min_free_disk_mb"
        )


class Objective(torch.nn.Module):
    """UNet and text encoder in one module, so that DDP syncs both; returns the per-batch diffusion loss."""

    def __init__(self, model: TextToImage) -> None:
        super().__init__()
        self.unet = model.unet
        self.text_encoder = model.text_encoder
        self.scheduler = model.scheduler

    def forward(self, clean, noise, timesteps, ids):
        noisy = self.scheduler.add_noise(clean, noise, timesteps)
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            target = noise
        elif kind == "sample":
            target = clean
        else:
            target = self.scheduler.get_velocity(clean, noise, timesteps)
        text = self.text_encoder(ids).last_hidden_state
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=text).sample
        return F.mse_loss(prediction.float(), target.float())


class Text2ImageTrainer:
    name = "text2image_scratch"

    def __init__(self, config: Text2ImageTrainConfig) -> None:
        self.config = config

    def train(self, ctx) -> None:
        with cpu_threads(self.config.cpu_threads, ctx.accelerator.device):
            self._train(ctx)

    def _train(self, ctx) -> None:
        config = self.config
        accelerator = ctx.accelerator
        device = accelerator.device
        where = f"step {ctx.step_id} ({self.name})"
        samples = select_samples(ctx.samples(config.split), config, where)
        object_class = Counter(s.object_class for s in samples).most_common(1)[0][0] or "industrial"
        images, prompts = load_images(samples, config, object_class, where)
        classes = sorted({s.defect_type for s in samples})
        info = {
            "trainer": self.name,
            "classes": classes,
            "object_class": object_class,
            "prompt_template": config.prompt_template,
            "crop": config.crop,
            "resolution": config.resolution,
            "channels": int(images.shape[1]),
            "max_tokens": config.model.max_tokens,
            "ema": config.ema,
            "prediction_type": config.prediction_type,
            "options": config.model_dump(mode="json"),
        }

        torch.manual_seed(config.seed)  # the initial weights
        model = build_model(config, int(images.shape[1]), info)
        objective = Objective(model).to(device)
        text_lr = config.lr if config.text_encoder_lr is None else config.text_encoder_lr
        if text_lr == 0:
            model.text_encoder.requires_grad_(False)
        groups = [{"params": list(model.unet.parameters()), "lr_scale": 1.0}]
        if text_lr:
            groups.append({"params": list(model.text_encoder.parameters()), "lr_scale": text_lr / config.lr})
        params = [p for group in groups for p in group["params"]]
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        ema = self._ema(params) if config.ema else None
        all_ids = model.tokenize([p for alternatives in prompts for p in alternatives], "cpu")
        offsets = np.cumsum([0] + [len(alternatives) for alternatives in prompts])
        empty_ids = model.tokenize([""], "cpu")[0]

        state = TrainState(lr=config.lr)
        latest = self._latest(ctx) if ctx.resume else None
        if latest is not None:
            state = self._load(latest, objective, optimizer, ema, accelerator)
            ctx.logger.info("%s: resumed after epoch %d from %s", self.name, state.epoch, latest)
            if state.stopped and state.epoch < config.epochs:
                ctx.logger.info("%s: stopped early at epoch %d (%s): not trained further", self.name, state.epoch, state.stopped)
            elif state.epoch < config.epochs and state.epoch > 0:
                # the rate is constant after warm-up (halved on plateaus): a longer run goes on at the rate it had
                ctx.logger.info(
                    "%s: training on to epoch %d at the learning rate it had (%g): the schedule has a constant tail",
                    self.name, config.epochs, state.lr,
                )
        elif config.init_from:
            self._init_from(ctx, model)
        model_ddp, optimizer = accelerator.prepare(objective, optimizer)
        dtype = self._precision(device)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()

        world, rank = accelerator.num_processes, accelerator.process_index
        per_step = config.batch_size * world
        micro_batches = math.ceil(len(images) / per_step)
        started = time.perf_counter()
        first_epoch = state.epoch
        guard = LossGuard(f"step {ctx.step_id} ({self.name})")
        model_ddp.train()
        for epoch in ctx.progress(range(first_epoch, config.epochs), config.epochs - first_epoch, self.name, unit="epochs"):
            if state.stopped:
                break
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
            ids = self._epoch_captions(all_ids, offsets, epoch)
            losses = []
            for group_start in range(0, micro_batches, config.grad_accumulation):
                group = range(group_start, min(group_start + config.grad_accumulation, micro_batches))
                total = torch.zeros((), device=device)
                for number, micro in enumerate(group):
                    picked = order[micro * per_step : (micro + 1) * per_step][rank::world]
                    inputs = self._inputs(images, ids, empty_ids, picked, model.scheduler, epoch, micro, rank, device)
                    sync = number == len(group) - 1
                    with contextlib.nullcontext() if sync else accelerator.no_sync(model_ddp), autocast:
                        loss = model_ddp(**inputs) / len(group)
                    accelerator.backward(loss)
                    total += loss.detach().float()
                self._set_lr(optimizer, state)
                if config.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(params)
                state.step += 1
                value = float(accelerator.gather(total.reshape(1)).mean())
                guard.check(value, state.step)
                losses.append(value)
                if state.step % config.log_every == 0:
                    ctx.log_scalar(f"{self.name}/loss", value, state.step)
            state.epoch = epoch + 1
            state.last_loss = float(np.mean(losses))
            ctx.log_scalar(f"{self.name}/epoch_loss", state.last_loss, state.epoch)
            ctx.log_scalar(f"{self.name}/lr", state.lr, state.epoch)
            self._plateau(ctx, state)
            last = state.epoch == config.epochs or bool(state.stopped)
            if config.sample_every and state.epoch % config.sample_every == 0 and not last:
                self._sample_grid(ctx, model, ema, params, classes, state.epoch)
            if state.epoch % config.checkpoint_every == 0 or last:  # the last one lets a longer run continue
                self._save(ctx, state, objective, optimizer, ema)
        seconds = time.perf_counter() - started

        folder = ctx.step_dir / MODEL_DIR
        self._export(ctx, model, ema, params, folder, state)
        grid_path = self._sample_grid(ctx, model, None, params, classes, state.epoch, final=True)
        if ctx.is_main_process:
            ctx.log_metrics(
                {
                    "trainer": self.name,
                    "train_images": len(images),
                    "classes": len(classes),
                    "resolution": config.resolution,
                    "epochs": state.epoch,
                    "trained_epochs": state.epoch - first_epoch,
                    "optimizer_steps": state.step,
                    "final_loss": round(state.last_loss, 6),
                    "best_epoch_loss": round(state.best_loss, 6),
                    "final_lr": state.lr,
                    "lr_halvings": state.lr_halvings,
                    "stopped_early": state.stopped or "no",
                    "trainable_parameters": sum(p.numel() for p in params),
                    "processes": world,
                    "train_seconds": round(seconds, 1),
                }
            )
        ctx.add_artifact("text2image_model", folder)
        if grid_path is not None:
            ctx.add_artifact("sample_grid", grid_path)

    # -- pieces of the loop -----------------------------------------------------------------

    def _precision(self, device) -> torch.dtype:
        wanted = self.config.mixed_precision
        if wanted == "auto":
            wanted = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
        return torch.bfloat16 if wanted == "bf16" else torch.float32

    def _ema(self, params):
        from diffusers.training_utils import EMAModel

        return EMAModel(params, decay=self.config.ema_decay, use_ema_warmup=self.config.ema_warmup)

    def _epoch_captions(self, all_ids: torch.Tensor, offsets: np.ndarray, epoch: int) -> torch.Tensor:
        """This epoch's token ids, one row per image: with several captions, one drawn per image and epoch."""
        counts = np.diff(offsets)
        if (counts == 1).all():
            return all_ids  # one caption each: nothing to draw (and no random numbers used)
        generator = torch.Generator().manual_seed(self.config.seed * 104_729 + epoch)
        chosen = (torch.rand(len(counts), generator=generator) * torch.from_numpy(counts)).long()
        return all_ids[torch.from_numpy(offsets[:-1]) + chosen]

    def _inputs(self, images, ids, empty_ids, picked, scheduler, epoch, micro, rank, device) -> dict:
        config = self.config
        generator = torch.Generator().manual_seed(((config.seed * 1_000_003 + epoch) * 10_007 + micro) * 101 + rank)
        clean = images[picked].float() / 127.5 - 1.0
        count = len(picked)
        if config.hflip:
            flip = torch.rand(count, generator=generator) < 0.5
            clean[flip] = clean[flip].flip(-1)
        if config.vflip:
            flip = torch.rand(count, generator=generator) < 0.5
            clean[flip] = clean[flip].flip(-2)
        text = ids[picked].clone()
        if config.caption_dropout:
            dropped = torch.rand(count, generator=generator) < config.caption_dropout
            text[dropped] = empty_ids
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (count,), generator=generator)
        return {
            "clean": clean.to(device),
            "noise": noise.to(device),
            "timesteps": timesteps.to(device),
            "ids": text.to(device),
        }

    def _set_lr(self, optimizer, state: TrainState) -> None:
        warm = min(1.0, (state.step + 1) / self.config.warmup_steps) if self.config.warmup_steps else 1.0
        for group in optimizer.param_groups:
            group["lr"] = state.lr * warm * group["lr_scale"]

    def _plateau(self, ctx, state: TrainState) -> None:
        """Track the best epoch loss; after ``plateau_patience`` epochs without improvement, act."""
        config = self.config
        if state.last_loss < state.best_loss - config.plateau_min_delta:
            state.best_loss, state.bad_epochs = state.last_loss, 0
            return
        state.bad_epochs += 1
        if config.plateau_patience is None or state.bad_epochs < config.plateau_patience:
            return
        if config.plateau_action == "stop":
            state.stopped = f"loss plateau after epoch {state.epoch}"
        elif state.lr / 2 < config.min_lr:
            state.stopped = f"loss plateau after epoch {state.epoch} at the minimum learning rate"
        else:
            state.lr /= 2
            state.lr_halvings += 1
            state.bad_epochs = 0
            ctx.logger.info(
                "%s: loss plateau after epoch %d: learning rate halved to %g", self.name, state.epoch, state.lr
            )
            return
        ctx.logger.info("%s: %s (best epoch loss %.5f); training stops", self.name, state.stopped, state.best_loss)

    def _sample_grid(self, ctx, model, ema, params, classes, epoch, final=False) -> Path | None:
        """One row per class from the EMA weights (the caller passes ema=None once they are copied in)."""
        config = self.config
        if not ctx.is_main_process:
            return None
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        model.modules().eval()
        try:
            prompts = [
                prompt_for(config.prompt_template, c, model.info["object_class"])
                for c in classes
                for _ in range(config.sample_per_class)
            ]
            seeds = [config.seed * 1000 + i for i in range(config.sample_per_class)] * len(classes)
            images = generate(
                model,
                prompts,
                seeds,
                steps=config.sample_steps,
                guidance=config.sample_guidance,
                device=next(model.unet.parameters()).device,
            )
        finally:
            if ema is not None:
                ema.restore(params)
            model.modules().train()
        path = ctx.step_dir / SAMPLES_DIR / f"{_EPOCH.format(epoch)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with dkio.atomic_path(path) as tmp:
            Image.fromarray(grid(images, len(classes))).save(tmp, format="PNG")
        label = "final (EMA weights)" if final else f"after epoch {epoch}"
        ctx.add_figure(path, f"samples {label}: one row per class ({', '.join(classes)})")
        return path

    def _export(self, ctx, model, ema, params, folder: Path, state: TrainState) -> None:
        """The model folder: the EMA weights as ``unet/`` and ``text_encoder/``, the raw ones beside them."""
        if ctx.is_main_process:
            check_free_disk(folder, self._bytes(params, 2), self.config.min_free_disk_mb)
            with dkio.atomic_dir(folder) as tmp:
                if ema is not None:
                    model.unet.save_pretrained(tmp / "unet_raw")
                    model.text_encoder.save_pretrained(tmp / "text_encoder_raw")
                    ema.copy_to(params)
                model.unet.save_pretrained(tmp / "unet")
                model.text_encoder.save_pretrained(tmp / "text_encoder")
                model.tokenizer.save_pretrained(tmp / "tokenizer")
                model.scheduler.save_pretrained(tmp / "scheduler")
                dkio.write_json(tmp / INFO, {**model.info, "epochs": state.epoch})
        elif ema is not None:
            ema.copy_to(params)
        ctx.accelerator.wait_for_everyone()

    def _init_from(self, ctx, model) -> None:
        """Start from another run's trained weights (its raw weights where it kept them, else the EMA ones)."""
        from defectkit.rundir import RunDirectory

        folder = RunDirectory.from_reference(self.config.init_from).artifact("text2image_model", producers=(self.name,))
        trained = load_model(folder, weights="raw" if (folder / "unet_raw").is_dir() else "ema")
        try:
            model.unet.load_state_dict(trained.unet.state_dict())
            model.text_encoder.load_state_dict(trained.text_encoder.state_dict())
        except RuntimeError as exc:
            raise DefectkitError(
                f"init_from {folder}: its model does not fit this one's options ({str(exc).strip().splitlines()[0]})"
            ) from None
        if trained.info.get("classes") != model.info.get("classes"):
            ctx.logger.info("%s: init_from %s had classes %s; now %s", self.name, folder, trained.info.get("classes"),
                            model.info.get("classes"))
        ctx.logger.info("%s: initialised from the weights of %s", self.name, folder)

    # -- checkpoints ----------------------------------------------------------------------

    @staticmethod
    def _bytes(params, copies: int) -> int:
        return sum(p.numel() * p.element_size() for p in params) * copies

    def _checkpoints(self, ctx) -> list[Path]:
        folder = ctx.step_dir / CHECKPOINT_DIR
        if not folder.is_dir():
            return []
        return sorted(
            p for p in folder.iterdir() if p.is_dir() and p.name.startswith("epoch-") and p.name[6:].isdigit()
        )

    def _latest(self, ctx) -> Path | None:
        found = self._checkpoints(ctx)
        return found[-1] if found else None

    def _save(self, ctx, state: TrainState, objective, optimizer, ema) -> None:
        from safetensors.torch import save_file

        accelerator = ctx.accelerator
        if ctx.is_main_process:
            folder = ctx.step_dir / CHECKPOINT_DIR / _EPOCH.format(state.epoch)
            params = list(objective.parameters())
            # weights, two AdamW moments and the EMA copy
            check_free_disk(folder, self._bytes(params, 4 if ema is not None else 3), self.config.min_free_disk_mb)
            with dkio.atomic_dir(folder) as tmp:
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()},
                    str(tmp / "model.safetensors"),
                )
                torch.save(
                    {"optimizer": optimizer.state_dict(), "ema": ema.state_dict() if ema is not None else None},
                    tmp / "training.pt",
                )
                dkio.write_json(
                    tmp / "state.json",
                    {"trainer": self.name, "processes": accelerator.num_processes, **asdict(state)},
                )
            for old in self._checkpoints(ctx)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            ctx.logger.info("%s: checkpoint after epoch %d in %s", self.name, state.epoch, folder)
        accelerator.wait_for_everyone()

    def _load(self, folder: Path, objective, optimizer, ema, accelerator) -> TrainState:

        meta = dkio.read_json(folder / "state.json", {})
        if meta.get("trainer") != self.name:
            raise DefectkitError(f"{folder}: not a {self.name} checkpoint")
        if meta.get("processes") != accelerator.num_processes:
            raise DefectkitError(
                f"{folder}: written by {meta.get('processes')} processes, resumed with {accelerator.num_processes}; "
                "resume with the same number of processes (the data order depends on it)"
            )
        try:
            objective.load_state_dict(load_tensors(folder / "model.safetensors"))
        except RuntimeError as exc:
            raise DefectkitError(
                f"{folder}: its weights do not fit this model's options ({str(exc).splitlines()[0]})"
            ) from None
        training = load_tensors(folder / "training.pt")
        optimizer.load_state_dict(training["optimizer"])
        if ema is not None and training["ema"] is not None:
            ema.load_state_dict(training["ema"])
        fields = {k: meta[k] for k in TrainState.__dataclass_fields__ if k in meta}
        return TrainState(**fields)
