"""The fine-tuning trainers: one loop (Accelerate, resumable, NaN-safe) and what each adapter adds.

``lora`` / ``dora`` put peft adapters on the denoiser's attention (and
optionally the CLIP text encoders), ``adalora`` lets peft reallocate a rank
budget during training, ``textual_inversion`` learns one multi-vector token per
defect class, ``ti_lora`` does both. All write the ``adapter`` artifact.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from defectkit import io as dkio
from defectkit.errors import DefectkitError
from defectkit.tensorfile import load_tensors
from defectkit.training import LossGuard
from defectkit_finetune import adapters
from defectkit_finetune.checkpoint import Checkpoints
from defectkit_finetune.config import FinetuneConfig
from defectkit_finetune.data import BatchSource, class_name, load_records, read_captions, select_samples
from defectkit_finetune.models import Backbone, load_backbone
from defectkit_finetune.optim import build_lr_scheduler, build_optimizer

ADAPTER_DIR = "adapter"
CHECKPOINT_DIR = "checkpoints"
DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainingState:
    """What the optimisation loop (:meth:`FinetuneTrainer.optimize`) works on."""

    model: torch.nn.Module  # the objective as accelerate prepared it
    objective: torch.nn.Module  # the bare objective: its trainable weights are checkpointed
    optimizer: torch.optim.Optimizer
    schedule: object
    scaler: object
    ema: object
    params: list
    dtype: torch.dtype
    first: int  # the first step to run (from a checkpoint when resuming)
    nonfinite: int  # steps skipped so far


class Objective(torch.nn.Module):
    """The trained modules and the diffusion loss, in one module so that DDP syncs every trainable weight."""

    def __init__(self, backbone: Backbone, config: FinetuneConfig, tokens, train_text: bool) -> None:
        super().__init__()
        self.denoiser = backbone.denoiser
        # text encoders are submodules only when something in them trains
        self.text_encoders = torch.nn.ModuleList(backbone.text_encoders if train_text else [])
        self.tokens = tokens
        self.backbone = backbone
        self.config = config

    def forward(self, latents, noise, timesteps, sigmas, text, time_ids, masks, weights):
        backbone = self.backbone
        if isinstance(text, list):  # prompts: the text encoders (or token vectors) train
            text = backbone.encode_prompts(text, latents.device)
        if backbone.flow_matching:
            noisy = (1.0 - sigmas) * latents + sigmas * noise
            target = noise - latents
        else:
            scheduler = backbone.noise_scheduler
            noisy = scheduler.add_noise(latents, noise, timesteps)
            kind = scheduler.config.prediction_type
            target = scheduler.get_velocity(latents, noise, timesteps) if kind == "v_prediction" else noise
        prediction = backbone.predict(noisy, timesteps, text, time_ids)
        error = F.mse_loss(prediction.float(), target.float(), reduction="none")
        if masks is not None:  # defect_loss_weight: stress the defect pixels (mask at latent resolution)
            region = F.adaptive_max_pool2d(masks, error.shape[-2:])
            error = error * (1.0 + (self.config.defect_loss_weight - 1.0) * region)
        return (error.mean(dim=(1, 2, 3)) * weights).mean()


class FinetuneTrainer:
    """The shared loop; subclasses attach their adapters and say how to export them."""

    name = "finetune"

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config
        self.tokens: adapters.TokenEmbeddings | None = None
        self.tuner = None  # the AdaLoRA tuner, which reallocates ranks after each step
        self.growth = None  # a LoRA rank growing during training (final_rank), switched on after each step

    # -- what subclasses provide ----------------------------------------------------------

    def attach(self, backbone: Backbone, classes: list[str]) -> None:
        """Put this trainer's adapters (LoRA, token vectors) on ``backbone`` for the defect ``classes``."""
        raise NotImplementedError

    def parameter_groups(self, backbone: Backbone) -> list[dict]:
        """The optimizer's parameter groups (``{"params": [...], "lr": ...}``) of what trains."""
        raise NotImplementedError

    def export_lora(self, backbone: Backbone) -> dict | None:
        """The LoRA state dicts to save (``denoiser``, ``text_encoder``, ... and ``ranks``), or ``None``."""
        return None

    @property
    def trains_text(self) -> bool:
        """Whether anything in the text encoders trains (then prompts are encoded every step, not cached)."""
        return self.tokens is not None

    def extra_loss(self, backbone: Backbone):
        """A term added to every micro-batch's loss (AdaLoRA's orthogonality penalty); 0 by default."""
        return 0.0

    # -- the loop -------------------------------------------------------------------------

    def train(self, ctx) -> None:
        """The ``train`` step: load the backbone, attach the adapters, run :meth:`optimize`, write the ``adapter`` artifact."""
        config = self.config
        accelerator = ctx.accelerator
        device = accelerator.device
        where = f"step {ctx.step_id} ({self.name})"
        samples = select_samples(ctx.samples(config.split), config, where)
        classes = sorted({s.defect_type for s in samples})

        torch.manual_seed(config.seed)  # the adapters' initial weights
        backbone = load_backbone(config.backend, config.model, device=device)
        self.attach(backbone, classes)
        tokens = self.tokens.tokens if self.tokens is not None else {}
        captions_path = ctx.artifact("captions", required=False) if config.captions == "auto" else None
        records = load_records(samples, config, tokens, read_captions(captions_path))

        dtype = self.precision(accelerator, device)
        self.place(backbone, device, dtype)
        source = BatchSource(records, config, accelerator.process_index, accelerator.num_processes)
        latents_cache = self._cache_latents(backbone, source, device) if config.latents_cached else None
        text_cache = None if self.trains_text else self._cache_text(backbone, records, device, dtype)

        objective = Objective(backbone, config, self.tokens, self.trains_text)
        groups = self.parameter_groups(backbone)
        params = [p for g in groups for p in g["params"]]
        optimizer = build_optimizer(groups, config, device)
        schedule = build_lr_scheduler(optimizer, config)
        ema = self._ema(params) if config.ema else None
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        first, nonfinite = self.resume_state(ctx, objective, optimizer, schedule, scaler, ema)
        # the schedule is stepped by hand once per optimizer step: prepare() would step it once per process
        model, optimizer = accelerator.prepare(objective, optimizer)

        def micro_loss(index: int):
            inputs = self._inputs(backbone, source, index, latents_cache, text_cache, device, dtype)
            return model(**inputs) + self.extra_loss(backbone)

        def after_step(done: int) -> None:
            if self.growth is not None and (done % config.log_every == 0 or done == config.steps):
                ctx.log_scalar(f"{self.name}/rank", self.growth.active, done)
            if config.validation_every and done % config.validation_every == 0 and done < config.steps:
                self._validate(ctx, backbone, classes, done, ema, params)

        state = TrainingState(model, objective, optimizer, schedule, scaler, ema, params, dtype, first, nonfinite)
        loss_value, nonfinite, seconds = self.optimize(ctx, state, micro_loss, after_step)

        if ema is not None:
            ema.copy_to(params)  # the averaged weights are the ones exported
        folder = ctx.step_dir / ADAPTER_DIR
        self.export(ctx, backbone, folder, classes)
        self._validate(ctx, backbone, classes, config.steps, None, params, final=True)
        if ctx.is_main_process:
            ctx.log_metrics(
                self.run_metrics(ctx, backbone, state, len(records), len(classes), loss_value, nonfinite, seconds)
            )
        ctx.add_artifact("adapter", folder)

    def run_metrics(
        self,
        ctx,
        backbone,
        state: TrainingState,
        images: int,
        classes: int,
        loss: float,
        nonfinite: int,
        seconds: float,
    ) -> dict:
        """The figures every trainer built on :meth:`optimize` reports in metrics.json."""
        config = self.config
        return {
            "trainer": self.name,
            "family": backbone.family,
            "train_images": images,
            "classes": classes,
            "processes": ctx.accelerator.num_processes,
            "steps": config.steps,
            "trained_steps": config.steps - state.first,
            "nonfinite_steps": nonfinite,
            "final_loss": round(loss, 6),
            "trainable_parameters": sum(p.numel() for p in state.params),
            "train_seconds": round(seconds, 1),
            "precision": str(state.dtype).removeprefix("torch."),
        }

    def optimize(self, ctx, state: TrainingState, micro_loss, after_step=None) -> tuple[float, int, float]:
        """The optimisation loop every trainer built on this class shares, from ``state.first`` to ``config.steps``.

        Gradient accumulation (``micro_loss(index)`` gives the loss of micro-batch ``index``, a counter a
        resumed run repeats), autocast in ``state.dtype``, NaN/inf steps skipped on every process alike, the
        schedule stepped once per optimizer step, loss/lr logging and checkpoints (of ``state.objective``, the
        module ``state.model`` wraps). ``after_step(done)`` runs after each step. Returns (last finite loss,
        non-finite steps, seconds).
        """
        config = self.config
        model, objective, optimizer, schedule = state.model, state.objective, state.optimizer, state.schedule
        scaler, ema, params, dtype = state.scaler, state.ema, state.params, state.dtype
        first, nonfinite = state.first, state.nonfinite
        accelerator = ctx.accelerator
        device = accelerator.device
        manager = Checkpoints(ctx.step_dir / CHECKPOINT_DIR, config.keep_checkpoints)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
        started = time.perf_counter()
        loss_value = float("nan")
        guard = LossGuard(f"step {ctx.step_id} ({self.name})")
        model.train()
        for step in ctx.progress(range(first, config.steps), total=config.steps - first, description=self.name, unit="steps"):
            total = torch.zeros((), device=device)
            for micro in range(config.grad_accumulation):
                index = step * config.grad_accumulation + micro
                sync = micro == config.grad_accumulation - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model), autocast:
                    loss = micro_loss(index) / config.grad_accumulation
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    accelerator.backward(loss)
                total += loss.detach().float()
            # every process must agree to skip, or their weights drift apart
            finite = bool(accelerator.gather(torch.isfinite(total).reshape(1)).all())
            if finite:
                self._optimizer_step(optimizer, scaler, params, step, accelerator)
                if ema is not None:
                    ema.step(params)
                loss_value = float(accelerator.gather(total.reshape(1)).mean())
            else:
                nonfinite += 1
                ctx.logger.warning("%s: step %d: loss is %s, step skipped", self.name, step + 1, float(total))
            guard.check(float(total) if finite else float("nan"), step + 1)
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                ctx.log_scalar(f"{self.name}/loss", loss_value, done)
                ctx.log_scalar(f"{self.name}/lr", schedule.get_last_lr()[0], done)
                ctx.log_scalar(f"{self.name}/nonfinite_steps", nonfinite, done)
            if done % config.checkpoint_every == 0 and done < config.steps:
                self.save(ctx, manager, done, nonfinite, objective, optimizer, schedule, scaler, ema)
            if after_step is not None:
                after_step(done)
        return loss_value, nonfinite, time.perf_counter() - started

    def resume_state(self, ctx, objective, optimizer, schedule, scaler, ema) -> tuple[int, int]:
        """(first step, non-finite steps so far): from this step's latest checkpoint when resuming, else (0, 0)."""
        manager = Checkpoints(ctx.step_dir / CHECKPOINT_DIR, self.config.keep_checkpoints)
        latest = manager.latest() if ctx.resume else None
        if latest is None:
            return 0, 0
        first, nonfinite = self._load(latest[1], objective, optimizer, schedule, scaler, ema, ctx.accelerator)
        ctx.logger.info("%s: resumed from the checkpoint of step %d in %s", self.name, first, latest[1])
        if self.growth is not None:
            self.growth.active = self.growth.rank_at(first)  # the loaded weights hold the components live by then
        return first, nonfinite

    # -- pieces of the loop -----------------------------------------------------------------

    def precision(self, accelerator, device) -> torch.dtype:
        """The training dtype of ``config.mixed_precision`` (``auto``: bf16 on a CUDA GPU that has it, else
        Accelerate's setting); fp16 on the CPU is refused. An extension point for trainers built on this loop."""
        wanted = self.config.mixed_precision
        if wanted == "auto":
            if device.type == "cuda" and torch.cuda.is_bf16_supported():
                wanted = "bf16"
            else:
                wanted = accelerator.mixed_precision if accelerator.mixed_precision in DTYPES else "no"
        if wanted == "fp16" and device.type == "cpu":
            raise DefectkitError("mixed_precision: fp16 needs a GPU; use bf16 or no on the CPU")
        return DTYPES[wanted]

    def place(self, backbone: Backbone, device, dtype) -> None:
        """Frozen weights in the training dtype on the device; trainable ones stay float32.

        Also moves the token vectors and switches on gradient checkpointing when configured. An extension
        point: call it after :meth:`attach` and before building the optimizer.
        """
        from diffusers.training_utils import cast_training_params

        backbone.denoiser.to(device, dtype=dtype)
        # the SD 1.5 / SDXL VAEs overflow in float16: they stay float32 then (as diffusers' scripts advise)
        backbone.vae.to(device, dtype=torch.float32 if dtype == torch.float16 else dtype)
        for encoder in backbone.text_encoders:
            encoder.to(device, dtype=dtype)
        cast_training_params([backbone.denoiser, *backbone.text_encoders], dtype=torch.float32)
        if self.tokens is not None:
            self.tokens.to(device)
        if self.config.gradient_checkpointing:
            backbone.denoiser.enable_gradient_checkpointing()
            if self.trains_text:
                for encoder, _ in backbone.clip_encoders:
                    # transformers 5 renamed it; the old name still works but warns
                    enable = (
                        getattr(encoder, "activation_checkpointing_enable", None)
                        or encoder.gradient_checkpointing_enable
                    )
                    enable()
        backbone.vae.eval()

    def _cache_latents(self, backbone, source: BatchSource, device, batch: int = 8):
        """The VAE is frozen and the images do not change: encode them once, keep the posterior."""
        means, stds = [], []
        for i in range(0, len(source.records), batch):
            pixels = torch.stack([r.image for r in source.records[i : i + batch]]).float() / 127.5 - 1.0
            mean, std = backbone.encode_images(pixels.to(device))
            means.append(mean)
            stds.append(std)
        return torch.cat(means), torch.cat(stds)

    @torch.no_grad()
    def _cache_text(self, backbone, records, device, dtype):
        """Frozen text encoders: each distinct prompt is encoded once."""
        prompts = sorted({r.prompt for r in records})
        cache = {}
        for i in range(0, len(prompts), 16):
            chunk = prompts[i : i + 16]
            encoded = backbone.encode_prompts(chunk, device)
            for j, prompt in enumerate(chunk):
                cache[prompt] = {k: v[j].to(dtype) for k, v in encoded.items()}
        return cache

    def _inputs(self, backbone, source, index, latents_cache, text_cache, device, dtype) -> dict:
        config = self.config
        batch = source.batch(index)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + index * 97 + source.process)
        if latents_cache is not None:
            picked = torch.tensor(source.indices(index), device=device)
            mean, std = latents_cache[0][picked], latents_cache[1][picked]
        else:
            mean, std = backbone.encode_images(batch["pixels"].to(device))
        shape = mean.shape
        latents = mean + std * torch.randn(shape, generator=generator).to(device)
        noise = torch.randn(shape, generator=generator)
        if config.noise_offset and not backbone.flow_matching:
            noise = noise + config.noise_offset * torch.randn(shape[0], shape[1], 1, 1, generator=generator)
        noise = noise.to(device)
        timesteps, sigmas, weights = self._timesteps(backbone, shape[0], generator, device)
        if text_cache is not None:
            text = {
                k: torch.stack([text_cache[p][k] for p in batch["prompts"]]) for k in text_cache[batch["prompts"][0]]
            }
        else:
            text = batch["prompts"]
        masks = batch["masks"].to(device) if config.defect_loss_weight != 1.0 else None
        return {
            "latents": latents.to(dtype),
            "noise": noise.to(dtype),
            "timesteps": timesteps,
            "sigmas": sigmas,
            "text": text,
            "time_ids": batch["time_ids"].to(device, dtype),
            "masks": masks,
            "weights": weights,
        }

    def _timesteps(self, backbone, count, generator, device):
        """Timesteps, flow-matching sigmas and per-sample loss weights (min-SNR or SD3's weighting)."""
        config = self.config
        scheduler = backbone.noise_scheduler
        total = scheduler.config.num_train_timesteps
        if backbone.flow_matching:
            from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

            u = compute_density_for_timestep_sampling(
                config.weighting_scheme, count, logit_mean=0.0, logit_std=1.0, mode_scale=1.29, generator=generator
            )
            indices = (u * total).long().clamp(0, total - 1)
            timesteps = scheduler.timesteps[indices].to(device)
            sigmas = scheduler.sigmas[indices].to(device).reshape(-1, 1, 1, 1)
            weights = compute_loss_weighting_for_sd3(config.weighting_scheme, sigmas).reshape(-1)
            return timesteps, sigmas, weights.float()
        timesteps = torch.randint(0, total, (count,), generator=generator).to(device)
        weights = torch.ones(count, device=device)
        if config.snr_gamma is not None:
            from diffusers.training_utils import compute_snr

            snr = compute_snr(scheduler, timesteps)
            weights = torch.minimum(snr, torch.full_like(snr, config.snr_gamma))
            weights = weights / (snr + 1.0 if scheduler.config.prediction_type == "v_prediction" else snr)
        return timesteps, None, weights.float()

    def _optimizer_step(self, optimizer, scaler, params, step: int, accelerator) -> None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if self.tuner is not None:
            self.tuner.update_and_allocate(step)  # after the step, before zero_grad (peft's order)
        if self.growth is not None:
            self.growth.after_step(step + 1)

    @staticmethod
    def _ema(params):
        from diffusers.training_utils import EMAModel

        return EMAModel(params)

    # -- checkpoints ----------------------------------------------------------------------

    def _trainable_state(self, objective) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in objective.named_parameters() if p.requires_grad}

    def save(self, ctx, manager, step, nonfinite, objective, optimizer, schedule, scaler, ema) -> None:
        """A checkpoint of step ``step`` (trainable weights, optimizer, schedule, scaler, EMA, every process's
        RNG) through ``manager``; :meth:`optimize` calls it every ``checkpoint_every`` steps."""
        from accelerate.utils import gather_object
        from safetensors.torch import save_file

        accelerator = ctx.accelerator
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        rngs = gather_object([rng]) if accelerator.num_processes > 1 else [rng]
        if ctx.is_main_process:
            state = {
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "rng": rngs,
                "adalora": self._adalora_state(),
            }

            def write(folder):
                save_file(self._trainable_state(objective), str(folder / "trainable.safetensors"))
                torch.save(state, folder / "training.pt")
                meta = {"step": step, "nonfinite_steps": nonfinite, "processes": accelerator.num_processes}
                dkio.write_json(folder / "meta.json", {"trainer": self.name, **meta})

            manager.save(step, write)
        accelerator.wait_for_everyone()

    def _load(self, folder, objective, optimizer, schedule, scaler, ema, accelerator) -> tuple[int, int]:

        meta = dkio.read_json(folder / "meta.json", {})
        if meta.get("processes") != accelerator.num_processes:
            raise DefectkitError(
                f"{folder}: written by {meta.get('processes')} processes, resumed with {accelerator.num_processes}; "
                "resume with the same number of processes (the data order depends on it)"
            )
        if meta.get("trainer") != self.name:
            raise DefectkitError(f"{folder}: a {meta.get('trainer')} checkpoint, this step trains {self.name}")
        missing, unexpected = objective.load_state_dict(load_tensors(folder / "trainable.safetensors"), strict=False)
        trainable = {n for n, p in objective.named_parameters() if p.requires_grad}
        if unexpected or trainable & set(missing):
            raise DefectkitError(f"{folder}: its weights do not match this trainer's adapters; start a new run")
        state = load_tensors(folder / "training.pt")
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        self._load_adalora(state.get("adalora"))
        rng = state["rng"][accelerator.process_index]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return int(meta["step"]), int(meta.get("nonfinite_steps", 0))

    def _adalora_state(self):
        if self.tuner is None:
            return None
        allocator = self.tuner.rankallocator
        config = self.tuner.peft_config["default"]
        return {
            "ipt": allocator.ipt,
            "exp_avg_ipt": allocator.exp_avg_ipt,
            "exp_avg_unc": allocator.exp_avg_unc,
            "rank_pattern": {k: [bool(x) for x in v] for k, v in (config.rank_pattern or {}).items()},
        }

    def _load_adalora(self, state) -> None:
        if self.tuner is None or state is None:
            return
        allocator = self.tuner.rankallocator
        allocator.ipt, allocator.exp_avg_ipt, allocator.exp_avg_unc = (
            state["ipt"],
            state["exp_avg_ipt"],
            state["exp_avg_unc"],
        )
        self.tuner.peft_config["default"].rank_pattern = state["rank_pattern"] or None

    # -- outputs --------------------------------------------------------------------------

    def export(self, ctx, backbone, folder, classes) -> None:
        """Write the ``adapter`` folder (LoRA of :meth:`export_lora`, the token vectors, ``adapter.json`` of
        :meth:`adapter_info`) on the main process, all processes waiting for it."""
        ctx.accelerator.wait_for_everyone()
        if ctx.is_main_process:
            lora = self.export_lora(backbone)
            info = self.adapter_info(classes)
            if lora:
                info["ranks"] = lora.pop("ranks", None)
            adapters.save_adapter(folder, backbone, lora, self.tokens, info)
        ctx.accelerator.wait_for_everyone()

    def adapter_info(self, classes: list[str]) -> dict:
        """What ``adapter.json`` records beside the weights (subclasses add their own keys)."""
        return {
            "trainer": self.name,
            "base_model": self.config.model,
            "backend": self.config.backend,
            "resolution": self.config.resolution,
            "classes": classes,
            "prompts": {c: self.class_prompt(c) for c in classes},
        }

    def class_prompt(self, defect: str) -> str:
        """The prompt that names defect type ``defect`` (its token when one is learned) in generation."""
        token = self.tokens.tokens[defect] if self.tokens is not None else class_name(defect)
        return self.config.prompt_template.format(token=token, defect=class_name(defect), object_class="industrial")

    @torch.no_grad()
    def _validate(self, ctx, backbone, classes, step, ema, params, final: bool = False) -> None:
        """A few images from the current weights: TensorBoard, and the report for the last ones."""
        config = self.config
        if not config.validation_images or not ctx.is_main_process:
            return
        from PIL import Image

        prompts = config.validation_prompts or [self.class_prompt(c) for c in classes]
        pipe = backbone.pipeline
        pipe.set_progress_bar_config(disable=True)
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        was_training = backbone.denoiser.training
        backbone.denoiser.eval()
        images = []
        for i, prompt in enumerate(prompts):
            generator = torch.Generator().manual_seed(config.seed + i)
            out = pipe(
                prompt,
                num_inference_steps=config.validation_inference_steps,
                guidance_scale=config.validation_guidance,
                height=config.resolution,
                width=config.resolution,
                generator=generator,
                output_type="pt",
            ).images
            images.append(out[0].float().clamp(0, 1).cpu())
        backbone.denoiser.train(was_training)
        if ema is not None:
            ema.restore(params)
        grid = torch.stack(images)
        ctx.tensorboard.add_images(f"{ctx.step_id}/validation", grid, step)
        if final:
            row = (torch.cat(list(grid), dim=2).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            with dkio.atomic_path(ctx.step_dir / "validation.png") as tmp:
                Image.fromarray(row).save(tmp, format="PNG")
            ctx.add_figure(ctx.step_dir / "validation.png", "validation: " + " | ".join(prompts))


# -- the trainers -------------------------------------------------------------------------


class LoraTrainer(FinetuneTrainer):
    """LoRA on the denoiser's attention (and optionally the CLIP text encoders)."""

    name = "lora"
    use_dora = False

    def attach(self, backbone: Backbone, classes: list[str]) -> None:
        self._attach_lora(backbone)

    def _attach_lora(self, backbone: Backbone) -> None:
        c = self.config
        # subclasses whose configs have no rank growth (DefectFill's) keep their rank
        final_rank = self._final_rank = getattr(c, "final_rank", None) or c.rank
        self._denoiser_lora = adapters.lora_config(final_rank, c.alpha, c.dropout, c.target_modules, self.use_dora)
        adapters.add_lora(backbone.denoiser, self._denoiser_lora, f"{self.name}: the {backbone.family} denoiser")
        self.growth = (
            adapters.GrowingRank(backbone.denoiser, c.rank, final_rank, c.steps * c.rank_growth_share, c.seed)
            if final_rank > c.rank
            else None
        )
        self._text_lora = None
        if c.train_text_encoder:
            rank = c.text_encoder_rank or c.rank
            alpha = c.alpha if c.text_encoder_rank is None else None
            self._text_lora = adapters.lora_config(rank, alpha, c.dropout, adapters.TEXT_ENCODER_TARGETS, self.use_dora)
            for encoder, _ in backbone.clip_encoders:
                adapters.add_lora(encoder, self._text_lora, f"{self.name}: the text encoder")

    @property
    def trains_text(self) -> bool:
        return self.tokens is not None or bool(self.config.train_text_encoder)

    def parameter_groups(self, backbone: Backbone) -> list[dict]:
        c = self.config
        groups = [{"params": [p for p in backbone.denoiser.parameters() if p.requires_grad], "lr": c.lr}]
        if c.train_text_encoder:
            params = [p for e, _ in backbone.clip_encoders for p in e.parameters() if p.requires_grad]
            groups.append({"params": params, "lr": c.text_encoder_lr or c.lr})
        return groups

    def export_lora(self, backbone: Backbone) -> dict | None:
        state = {
            "denoiser": adapters.lora_state_dict(backbone.denoiser, adalora=False),
            "denoiser_metadata": _metadata(self._denoiser_lora),
        }
        state["ranks"] = {"denoiser": self._final_rank}
        if self.growth is not None:
            state["ranks"]["grown_from"] = self.config.rank
        if self._text_lora is not None:
            for i, (encoder, _) in enumerate(backbone.clip_encoders):
                key = "text_encoder" if i == 0 else "text_encoder_2"
                state[key] = adapters.lora_state_dict(encoder, adalora=False)
                state[f"{key}_metadata"] = _metadata(self._text_lora)
        return state


def _metadata(config) -> dict:
    # diffusers stores the peft config in the safetensors header (alpha, DoRA) and rebuilds it on loading
    data = config.to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}


class DoraTrainer(LoraTrainer):
    """DoRA: LoRA with magnitude/direction decomposition (peft ``LoraConfig(use_dora=True)``)."""

    name = "dora"
    use_dora = True


class AdaLoraTrainer(FinetuneTrainer):
    """AdaLoRA: ranks start at init_r; peft prunes singular values to a target_r budget on average."""

    name = "adalora"

    def attach(self, backbone: Backbone, classes: list[str]) -> None:
        self.tuner = adapters.add_adalora(backbone.denoiser, self.config, self.config.steps)

    def parameter_groups(self, backbone: Backbone) -> list[dict]:
        return [{"params": [p for p in backbone.denoiser.parameters() if p.requires_grad], "lr": self.config.lr}]

    def extra_loss(self, backbone: Backbone):
        weight = self.config.orth_reg_weight
        return weight * adapters.orthogonal_penalty(backbone.denoiser) if weight else 0.0

    def export_lora(self, backbone: Backbone) -> dict | None:
        state = adapters.adalora_as_lora(backbone.denoiser)
        from diffusers.utils import convert_state_dict_to_diffusers

        ranks = adapters.adapter_ranks(state)
        return {
            "denoiser": convert_state_dict_to_diffusers(state),
            "ranks": {
                "init_r": self.config.init_r,
                "target_r": self.config.target_r,
                "mean_rank": round(sum(ranks.values()) / max(len(ranks), 1), 3),
                "per_layer": ranks,
            },
        }


class TextualInversionTrainer(FinetuneTrainer):
    """A token per defect class; only its vectors train."""

    name = "textual_inversion"

    def attach(self, backbone: Backbone, classes: list[str]) -> None:
        self._attach_tokens(backbone, classes)

    def _attach_tokens(self, backbone: Backbone, classes: list[str]) -> None:
        if backbone.family == "sd3":
            raise DefectkitError(
                f"{self.name}: diffusers loads textual-inversion embeddings into SD 1.5 and SDXL pipelines only; "
                "use lora or dora for sd3"
            )
        self.tokens = adapters.TokenEmbeddings(backbone, classes, self.config)

    def parameter_groups(self, backbone: Backbone) -> list[dict]:
        return [{"params": list(self.tokens.parameters()), "lr": self.config.lr}]


class TiLoraTrainer(LoraTrainer, TextualInversionTrainer):
    """Textual inversion and LoRA together: the new tokens and the adapters learn at once."""

    name = "ti_lora"

    @property
    def use_dora(self) -> bool:  # type: ignore[override]
        return self.config.use_dora

    def attach(self, backbone: Backbone, classes: list[str]) -> None:
        self._attach_tokens(backbone, classes)
        self._attach_lora(backbone)

    def parameter_groups(self, backbone: Backbone) -> list[dict]:
        groups = LoraTrainer.parameter_groups(self, backbone)
        return [*groups, {"params": list(self.tokens.parameters()), "lr": self.config.embedding_lr}]
