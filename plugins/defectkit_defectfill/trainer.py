"""The ``defectfill`` trainer: an inpainting model learns a defect type from a few image-mask pairs.

Each micro-batch uses every defect image twice, in one UNet call of 2B samples:

* defect branch: the image masked by its real defect mask M, prompt ``A photo of [V*]``,
  loss ``mean(M (eps - eps_theta)^2)`` (:func:`~defectkit_defectfill.losses.defect_loss`);
* object branch: the image masked by random boxes, prompt ``A [object] with [V*]``,
  loss ``mean((M + alpha (1 - M)) (eps - eps_theta)^2)`` (:func:`~defectkit_defectfill.losses.object_loss`);
* attention: the decoder's cross-attention map of [V*] (one branch's) against M
  (:func:`~defectkit_defectfill.losses.attention_loss`).

Two optional terms are seed 001 §11's extension directions: a perceptual (LPIPS) loss on the decoded
one-step estimate of the defect branch (``lambda_lpips``), and the consistency of the [V*] map across the
decoder's resolutions (``lambda_attention_consistency``).

The adapters are those of ``ti_lora`` (a learned token per defect type, LoRA on the UNet attention and the
text encoder) and the loop, checkpoints, resume and NaN skipping are the finetune trainers' own
(:meth:`FinetuneTrainer.optimize`); the artifact is the same ``adapter`` folder, which ``apply_adapter``
and the ``defectfill`` generator load.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from defectkit_finetune.api import (
    ADAPTER_DIR,
    Backbone,
    BatchSource,
    Objective,
    TiLoraTrainer,
    TokenEmbeddings,
    TrainingState,
    build_lr_scheduler,
    build_optimizer,
    class_name,
    load_backbone,
    load_records,
    select_samples,
)

from defectkit import io as dkio
from defectkit.errors import DataError, DefectkitError
from defectkit_defectfill import attention
from defectkit_defectfill.config import DefectFillTrainConfig
from defectkit_defectfill.losses import (
    attention_consistency_loss,
    attention_loss,
    defect_loss,
    latent_mask,
    object_loss,
    perceptual_loss,
    predicted_clean_latents,
    random_boxes,
)

TINY_MODEL_DIR = "tiny_model"
TERMS = ("defect", "object", "attention")  # the paper's; the extension terms follow when they are on


def loss_terms(config: DefectFillTrainConfig) -> tuple[str, ...]:
    """The names of the loss terms a run with ``config`` logs, in the order of the objective's parts."""
    extra = (("lpips",) if config.lambda_lpips > 0 else ()) + (
        ("attention_consistency",) if config.lambda_attention_consistency > 0 else ()
    )
    return TERMS + extra


class DefectFillObjective(Objective):
    """The losses from one UNet call over the defect and object branches (first and second half)."""

    def __init__(
        self,
        backbone: Backbone,
        config: DefectFillTrainConfig,
        tokens,
        store: attention.AttentionStore,
        perceptual=None,
    ):
        super().__init__(backbone, config, tokens, train_text=True)
        self.store = store
        self.perceptual = perceptual  # the LPIPS distance of lambda_lpips (None: off)

    def forward(
        self,
        latents,
        noise,
        timesteps,
        text,
        time_ids,
        inpaint_mask,
        masked_latents,
        loss_mask,
        selection,
        pixels=None,
        pixel_mask=None,
    ):
        backbone, config = self.backbone, self.config
        scheduler = backbone.noise_scheduler
        noisy = scheduler.add_noise(latents, noise, timesteps)
        kind = scheduler.config.prediction_type
        target = scheduler.get_velocity(latents, noise, timesteps) if kind == "v_prediction" else noise
        encoded = backbone.encode_prompts(text, latents.device)
        sample = torch.cat([noisy, inpaint_mask.to(noisy.dtype), masked_latents.to(noisy.dtype)], dim=1)
        self.store.start(selection, tuple(latents.shape[-2:]))
        try:
            prediction = backbone.predict(sample, timesteps, encoded, time_ids)
        finally:
            self.store.active = False
        maps = self.store.stop()
        half = latents.shape[0] // 2
        l_defect = defect_loss(prediction[:half], target[:half], loss_mask)
        l_object = object_loss(prediction[half:], target[half:], loss_mask, config.alpha_object)
        branch = slice(0, half) if config.attention_branch == "defect" else slice(half, None)
        attended = maps[branch]
        l_attention = attention_loss(attended, loss_mask)
        total = (
            config.lambda_defect * l_defect + config.lambda_object * l_object + config.lambda_attention * l_attention
        )
        parts = [l_defect, l_object, l_attention]
        if config.lambda_lpips > 0:
            abar = scheduler.alphas_cumprod.to(latents.device)[timesteps[:half]]
            clean = predicted_clean_latents(noisy[:half], prediction[:half], abar, kind)
            estimate = backbone.decode_latents(clean)
            l_lpips = perceptual_loss(estimate, pixels, pixel_mask, abar, self.perceptual)
            total = total + config.lambda_lpips * l_lpips
            parts.append(l_lpips)
        if config.lambda_attention_consistency > 0:
            l_consistency = attention_consistency_loss([m[branch] for m in self.store.scale_maps()])
            total = total + config.lambda_attention_consistency * l_consistency
            parts.append(l_consistency)
        return total, torch.stack(parts).detach(), attended.detach()


class DefectFillTrainer(TiLoraTrainer):
    """DefectFill fine-tuning (Song et al., CVPR 2025) on an inpainting backend."""

    name = "defectfill"

    def __init__(self, config: DefectFillTrainConfig) -> None:
        super().__init__(config)
        self.model_source = ""
        self._object_classes: dict[str, str] = {}
        self._visual = None

    # -- the model -----------------------------------------------------------------------

    def _model_source(self, ctx) -> str:
        """The pipeline to train: the configured one, or a tiny random one built once in the step folder."""
        from defectkit.plugins import get_registry

        config = self.config
        backend = get_registry().get("model_backend", config.backend).create({"model": config.model})
        if not config.tiny_model:
            return backend.model
        from defectkit_diffusion.tiny import build_tiny_pipeline

        folder = ctx.step_dir / TINY_MODEL_DIR
        if not (folder / "model_index.json").is_file():
            if ctx.is_main_process:
                with dkio.atomic_dir(folder) as tmp:
                    # lambda_attention_consistency compares resolutions: then cross-attention at both (twice
                    # the step time on a CPU), else at the coarser one only
                    levels = 2 if config.lambda_attention_consistency > 0 else 1
                    build_tiny_pipeline(backend.family, tmp, inpainting=True, seed=config.seed, attention_levels=levels)
            ctx.accelerator.wait_for_everyone()
        return str(folder)

    # -- the step ------------------------------------------------------------------------

    def train(self, ctx) -> None:
        config = self.config
        accelerator = ctx.accelerator
        device = accelerator.device
        where = f"step {ctx.step_id} ({self.name})"
        samples = select_samples(ctx.samples(config.split), config, where)
        classes = sorted({s.defect_type for s in samples})
        self._object_classes = {s.defect_type: config.object_class or s.object_class or "object" for s in samples}

        self.model_source = self._model_source(ctx)
        torch.manual_seed(config.seed)  # the adapters' and the token's initial weights
        backbone = load_backbone(config.backend, self.model_source, device=device, inpainting=True)
        self.attach(backbone, classes)
        records = load_records(samples, config, self.tokens.tokens, {})
        empty = [r.id for r in records if not bool(r.mask.any())]
        if empty:
            raise DataError(
                f"{where}: {empty[0]} has no defect pixels in its mask at resolution {config.resolution}; "
                "DefectFill learns from image-mask pairs (choose another split: or classes:)"
            )

        levels = attention.decoder_attention_levels(backbone.denoiser)
        if config.lambda_attention_consistency > 0 and levels < 2:
            raise DefectkitError(
                f"{where}: lambda_attention_consistency compares the [V*] attention across decoder resolutions, "
                f"and this UNet has cross-attention at {levels} (set it to 0 for this model)"
            )
        dtype = self.precision(accelerator, device)
        self.place(backbone, device, dtype)
        store = attention.install(backbone.denoiser)
        source = BatchSource(records, config, accelerator.process_index, accelerator.num_processes)
        token_ids = self._token_ids(backbone)
        perceptual = self._perceptual_distance(device) if config.lambda_lpips > 0 else None
        names = loss_terms(config)

        objective = DefectFillObjective(backbone, config, self.tokens, store, perceptual)
        groups = self.parameter_groups(backbone)
        params = [p for g in groups for p in g["params"]]
        optimizer = build_optimizer(groups, config, device)
        schedule = build_lr_scheduler(optimizer, config)
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        first, nonfinite = self.resume_state(ctx, objective, optimizer, schedule, scaler, None)
        model, optimizer = accelerator.prepare(objective, optimizer)
        terms = torch.zeros(len(names), device=device)
        last_terms: dict[str, float] = {}

        def micro_loss(index: int):
            nonlocal terms
            inputs, pixels = self._inputs(backbone, source, index, token_ids, device, dtype)
            total, parts, maps = model(**inputs)
            terms = terms + parts.float() / config.grad_accumulation
            done = index // config.grad_accumulation + 1
            if self._draws_attention(done) and index % config.grad_accumulation == 0:
                self._visual = (
                    pixels[0].detach().float().cpu(),
                    inputs["loss_mask"][0, 0].cpu(),
                    maps[0].float().cpu(),
                )
            return total

        def after_step(done: int) -> None:
            nonlocal terms
            values = accelerator.gather(terms.reshape(1, -1)).mean(0)
            if bool(torch.isfinite(values).all()):
                last_terms.update({name: float(v) for name, v in zip(names, values, strict=True)})
            terms = torch.zeros_like(terms)
            if done % config.log_every == 0 or done == config.steps:
                for name, value in last_terms.items():
                    ctx.log_scalar(f"{self.name}/loss_{name}", value, done)
            if self._draws_attention(done):
                self._log_attention(ctx, done, final=done == config.steps)

        state = TrainingState(model, objective, optimizer, schedule, scaler, None, params, dtype, first, nonfinite)
        loss_value, nonfinite, seconds = self.optimize(ctx, state, micro_loss, after_step)
        folder = ctx.step_dir / ADAPTER_DIR
        self.export(ctx, backbone, folder, classes)
        if ctx.is_main_process:
            figures = self.run_metrics(ctx, backbone, state, len(records), len(classes), loss_value, nonfinite, seconds)
            figures["model"] = self.model_source
            figures.update({f"final_loss_{name}": float(f"{value:.6g}") for name, value in last_terms.items()})
            ctx.log_metrics(figures)
        ctx.add_artifact("adapter", folder)

    def _perceptual_distance(self, device):
        """The frozen LPIPS distance of ``lambda_lpips`` (two ``[0, 1]`` batches -> one distance per pair)."""
        from defectkit_metrics.api import lpips_distance

        return lpips_distance(self.config.lpips_extractor, device)

    # -- inputs --------------------------------------------------------------------------

    def _token_ids(self, backbone: Backbone) -> dict[str, list[int]]:
        """Defect type -> the ids of its token's vectors in the first tokenizer."""
        tokenizer = backbone.tokenizers[0]
        names = {c: TokenEmbeddings.expanded(t, self.tokens.num_vectors) for c, t in self.tokens.tokens.items()}
        return {c: tokenizer.convert_tokens_to_ids(n) for c, n in names.items()}

    def object_prompt(self, defect: str) -> str:
        return self.config.object_prompt.format(
            object_class=self._object_classes[defect], token=self.tokens.tokens[defect]
        )

    def _selection(self, backbone: Backbone, prompts: list[str], defects: list[str], token_ids) -> torch.Tensor:
        """``[2B, K]``: where each prompt holds its type's token, tokenized as the pipeline does."""
        pipe, tokenizer = backbone.pipeline, backbone.tokenizers[0]
        converted = [pipe.maybe_convert_prompt(p, tokenizer) for p in prompts]
        ids = tokenizer(
            converted, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        hit = torch.stack([torch.isin(row, torch.tensor(token_ids[d])) for row, d in zip(ids, defects, strict=True)])
        counts = hit.sum(1, keepdim=True)
        if bool((counts == 0).any()):
            raise DataError(
                f"{self.name}: a prompt lost its defect token to truncation: {converted[int((counts == 0).nonzero()[0, 0])]!r}"
            )
        return hit.float() / counts

    def _inputs(self, backbone: Backbone, source: BatchSource, index: int, token_ids, device, dtype):
        config = self.config
        batch = source.batch(index)
        defects = [source.records[i].defect for i in source.indices(index)]
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + index * 97 + source.process)
        pixels = batch["pixels"].to(device)
        masks = (batch["masks"] > 0.5).float().to(device)
        count, size = pixels.shape[0], pixels.shape[-1]
        boxes = random_boxes(count, size, config.box_size, config.max_boxes, generator).to(device)
        inpaint = torch.cat([masks, boxes])
        both = torch.cat([pixels, pixels])
        # the inpainting pipelines' masked image: the pixels to repaint set to 0 (grey in [-1, 1])
        masked_latents, _ = backbone.encode_images(both * (inpaint < 0.5))
        mean, std = backbone.encode_images(pixels)
        latents = mean + std * torch.randn(mean.shape, generator=generator).to(device)
        latents = torch.cat([latents, latents])
        shape = latents.shape
        noise = torch.randn(shape, generator=generator).to(device)
        total = backbone.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, total, (shape[0],), generator=generator).to(device)
        size_latent = tuple(shape[-2:])
        prompts = list(batch["prompts"]) + [self.object_prompt(d) for d in defects]
        inputs = {
            "latents": latents.to(dtype),
            "noise": noise.to(dtype),
            "timesteps": timesteps,
            "text": prompts,
            "time_ids": torch.cat([batch["time_ids"]] * 2).to(device, dtype),
            # the UNet's mask channel as the pipelines make it (nearest); the losses' mask keeps thin defects
            "inpaint_mask": F.interpolate(inpaint, size=size_latent),
            "masked_latents": masked_latents,
            "loss_mask": latent_mask(masks, size_latent),
            "selection": self._selection(backbone, prompts, defects + defects, token_ids).to(device),
        }
        if config.lambda_lpips > 0:  # the defect branch's image and pixel mask, for the perceptual loss
            inputs.update(pixels=pixels.to(dtype), pixel_mask=masks.to(dtype))
        return inputs, pixels

    # -- logs and outputs ------------------------------------------------------------------

    def _draws_attention(self, done: int) -> bool:
        every = self.config.attention_log_every
        return done == self.config.steps or bool(every and done % every == 0)

    def _log_attention(self, ctx, step: int, final: bool) -> None:
        """Image, mask, the [V*] attention map (raw probabilities, 0 black, 1 white) and the map / its maximum."""
        if self._visual is None or not ctx.is_main_process:
            return
        pixels, mask, attended = self._visual
        size = pixels.shape[-1]

        def grey(plane):
            up = F.interpolate(plane[None, None].clamp(0, 1), size=(size, size), mode="nearest")[0]
            return up.expand(3, -1, -1)

        stretched = attended / attended.max().clamp_min(1e-8)  # where the token looks, whatever its strength
        row = torch.stack([(pixels + 1.0) / 2.0, grey(mask), grey(attended), grey(stretched)]).clamp(0, 1)
        ctx.tensorboard.add_images(f"{ctx.step_id}/attention", row, step)
        if final:
            from PIL import Image

            strip = (torch.cat(list(row), dim=2).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            path = ctx.step_dir / "attention.png"
            with dkio.atomic_path(path) as tmp:
                Image.fromarray(strip).save(tmp, format="PNG")
            ctx.add_figure(
                path,
                "defectfill: a training image, its defect mask (latent size), the [V*] attention map (0 black, 1 white) "
                "and the same map divided by its maximum",
            )

    def class_prompt(self, defect: str) -> str:
        return self.config.defect_prompt.format(token=self.tokens.tokens[defect])

    def adapter_info(self, classes: list[str]) -> dict:
        info = super().adapter_info(classes)
        info.update(
            base_model=self.model_source,
            generator="defectfill",
            object_classes={c: self._object_classes.get(c, "") for c in classes},
            object_prompts={c: self.object_prompt(c) for c in classes},
            defect_names={c: class_name(c) for c in classes},
        )
        return info


def tiny_model_folder(step_dir: str | Path) -> Path:
    """Where ``tiny_model: true`` builds its pipeline."""
    return Path(step_dir) / TINY_MODEL_DIR
