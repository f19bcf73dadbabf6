"""The ``decodiff`` detector: batched deviation correction and on-device anomaly maps for the test split."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from defectkit.anomaly_maps import map_names, save_map, write_scores
from defectkit.data import Sample
from defectkit.errors import DataError, DefectkitError
from defectkit.io import write_json
from defectkit.overlays import pick_overlays, save_overlay
from defectkit.stats import choose_threshold
from defectkit_decodiff.config import DecoDiffDetectConfig
from defectkit_decodiff.diffusion import ddim_deviation_sample
from defectkit_decodiff.model import Checkpoint, LatentCodec, crop_mask, load_checkpoint, load_images, to_model_range
from defectkit_decodiff.postprocess import MapSettings, fuse_gate, geometric_maps

THRESHOLD_FILE = "threshold.json"


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class AnomalyScorer:
    """A loaded checkpoint that turns image batches into anomaly maps and scores."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        config: DecoDiffDetectConfig,
        device: torch.device,
        codec: LatentCodec | None = None,
    ) -> None:
        if config.fusion == "gated" and not checkpoint.config.dod_gate:
            raise DefectkitError(
                "decodiff: fusion: gated needs a UNet trained with dod_gate: true; set it in the train step "
                "or use fusion: geometric"
            )
        if config.category != "auto" and config.category not in checkpoint.classes:
            raise DefectkitError(
                f"decodiff: category {config.category!r} is not one the model was trained on: {checkpoint.classes}"
            )
        self.checkpoint, self.config, self.device = checkpoint, config, device
        self.codec = codec or LatentCodec(checkpoint.config, device)
        self.alphas_cumprod = checkpoint.alphas_cumprod
        self.settings = MapSettings(
            config.image_clip, config.image_sigma, config.latent_clip, config.latent_sigma, config.gate_sigma
        )

    def classes_for(self, categories: Sequence[str | None], images: torch.Tensor) -> torch.Tensor:
        """The class index of each image: fixed, its own known category, or the classifier's answer."""
        classes = self.checkpoint.classes
        if self.config.category != "auto":
            return torch.full((len(images),), classes.index(self.config.category), device=self.device)
        if len(classes) == 1:
            return torch.zeros(len(images), dtype=torch.long, device=self.device)
        if all(c in classes for c in categories):
            return torch.tensor([classes.index(c) for c in categories], device=self.device)
        return self.classify(images)

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        if self.checkpoint.classifier is None:
            raise DefectkitError(
                "decodiff: the image's category is unknown and the checkpoint has no category classifier; "
                f"set detect's category to one of {self.checkpoint.classes} or train with classifier: true"
            )
        return self.checkpoint.classifier(images).argmax(dim=1)

    @torch.no_grad()
    def score(self, images: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] ``[B, 3, H, W]`` -> maps ``[B, H, W]`` and image scores (map maxima) ``[B]``."""
        maps, scores, _ = self.score_with_reconstruction(images, classes)
        return maps, scores

    @torch.no_grad()
    def score_with_reconstruction(
        self, images: torch.Tensor, classes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`score` plus the deviation-corrected reconstruction ``[B, 3, H, W]`` in [-1, 1] (the web UI shows it)."""
        config = self.config
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if config.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            latents = self.codec.encode(images)
            corrected, gate = ddim_deviation_sample(
                self.checkpoint.unet,
                latents,
                classes,
                self.alphas_cumprod,
                config.start_t,
                config.sample_steps,
                return_gate=config.fusion == "gated",
            )
            if config.image_reference == "decoded":
                # one pass through the decoder for both latents; the clean latent's decode is the reference,
                # so what the VAE cannot reproduce of a good image does not show up as a defect
                decoded = self.codec.decode(torch.cat([corrected, latents]))
                reconstructed, reference = decoded[: len(images)], decoded[len(images) :]
            else:
                reconstructed, reference = self.codec.decode(corrected), images
        maps = geometric_maps(
            reference.float(), reconstructed.float(), latents.float(), corrected.float(), self.settings
        )
        if gate is not None:
            maps = fuse_gate(maps, gate, self.settings)
        return maps, maps.flatten(1).amax(dim=1), reconstructed.float()


def _gather(accelerator, part: dict) -> list[dict]:
    """Every process's ``part`` (small: scores and map ranges), in rank order; the maps stay on disk."""
    if accelerator.num_processes == 1:
        return [part]
    from accelerate.utils import gather_object

    return gather_object([part])


def score_validation(scorer: AnomalyScorer, validation: dict, batch_size: int, track=None):
    """Maps ``(N, S, S)`` and image scores ``(N,)`` of a synthetic validation set (``load_validation_set``).

    ``track(batch_starts, total=, size=)`` wraps the batches (a progress bar); by default none."""
    count = len(validation["images"])
    starts = range(0, count, batch_size)
    if track is not None:
        starts = track(starts, total=count, size=lambda start: min(batch_size, count - start))
    maps, scores = [], []
    for start in starts:
        images = to_model_range(validation["images"][start : start + batch_size], scorer.device)
        classes = torch.as_tensor(validation["classes"][start : start + batch_size], device=scorer.device)
        chunk_maps, chunk_scores = scorer.score(images, classes)
        maps.append(chunk_maps.float().cpu().numpy())
        scores.append(chunk_scores.float().cpu().numpy())
    return np.concatenate(maps), np.concatenate(scores)


def validation_aurocs(validation: dict, maps: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Image and pixel AUROC of :func:`score_validation`'s output against the pasted defects."""
    from defectkit.stats import auroc

    return float(auroc(validation["labels"], scores)), float(auroc(validation["masks"].ravel(), maps.ravel()))


class DecoDiffDetector:
    """Scores the test split with the ``checkpoint`` artifact of a ``decodiff`` train step."""

    def __init__(self, config: DecoDiffDetectConfig) -> None:
        self.config = config

    def open_predictor(self, run_dir: str | Path, step_id: str, device: str = "auto"):
        """The finished step ``step_id`` made ready for new images (``defectkit detect``, ``defectkit serve``)."""
        from defectkit_decodiff.predictor import DecoDiffPredictor

        return DecoDiffPredictor(run_dir, step_id, device)

    def detect(self, ctx) -> None:
        maps_dir = ctx.step_dir / "anomaly_maps"
        scores_path = ctx.step_dir / "scores.csv"
        self._detect(ctx, maps_dir, scores_path)
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("scores", scores_path)

    def _score_samples(self, scorer: AnomalyScorer, samples: Sequence[Sample], ctx, description: str):
        model = scorer.checkpoint.config
        batches = ctx.progress(
            _chunks(samples, self.config.batch_size),
            total=len(samples),
            description=description,
            unit="images",
            size=len,
        )
        for chunk in batches:
            raw = load_images(chunk, model.image_size, model.crop_size)
            images = to_model_range(raw, scorer.device)
            categories = [s.object_class or "default" for s in chunk]
            maps, scores = scorer.score(images, scorer.classes_for(categories, images))
            yield chunk, raw, maps.cpu().numpy(), scores.cpu().tolist()

    def _detect(self, ctx, maps_dir: Path, scores_path: Path) -> None:
        config = self.config
        test = ctx.samples("test")
        if not test:
            raise DataError("decodiff: the test split is empty: nothing to score")
        names = map_names(test, "decodiff")
        checkpoint_path = ctx.artifact("checkpoint")
        if config.checkpoint == "best":
            best = ctx.artifact("best_checkpoint", required=False)
            if best is not None and best.parent == checkpoint_path.parent:  # the same train step's choice
                checkpoint_path = best
        checkpoint = load_checkpoint(checkpoint_path, ctx.device)
        synthetic = self._synthetic_validation(ctx, checkpoint_path, "validation_grid" if config.validation_grid else None)
        choice, synthetic_scores = None, None
        if config.validation_grid:
            config, choice, synthetic_scores = self._choose_on_validation(checkpoint, ctx, synthetic)
        scorer = AnomalyScorer(checkpoint, config, ctx.device)
        ctx.logger.info("decodiff: detecting with %s (step %d)", checkpoint_path.name, scorer.checkpoint.step)
        model_config = scorer.checkpoint.config
        overlay_at = set(pick_overlays([s.defect_type for s in test], [s.label for s in test], config.overlays))

        # sharded over the processes of `accelerate launch`: each scores every world-th image and writes its
        # maps (one file per image, so no two processes write the same file); the scores are gathered
        accelerator = ctx.accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        mine = list(range(rank, len(test), world))
        shard: list[tuple[int, float]] = []
        kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        low, high = math.inf, -math.inf
        started = time.perf_counter()
        shard_samples = [test[i] for i in mine]
        for chunk, raw, maps, chunk_scores in self._score_samples(scorer, shard_samples, ctx, "decodiff detect"):
            low, high = min(low, float(maps.min())), max(high, float(maps.max()))
            for j, sample in enumerate(chunk):
                i = mine[len(shard)]
                save_map(maps_dir, names[i], maps[j])
                shard.append((i, chunk_scores[j]))
                if i in overlay_at:
                    mask = sample.load_mask()
                    mask = None if mask is None else crop_mask(mask, model_config.image_size, model_config.crop_size)
                    kept[i] = (raw[j], maps[j], mask)
        gathered = _gather(accelerator, {"scores": shard, "low": low, "high": high})
        seconds = time.perf_counter() - started
        scores = [score for _, score in sorted(pair for part in gathered for pair in part["scores"])]
        low, high = min(p["low"] for p in gathered), max(p["high"] for p in gathered)

        for i, (image, anomaly_map, mask) in sorted(kept.items()):  # each process draws its own shard's overlays
            path = ctx.step_dir / "overlays" / f"{i:03d}_{names[i].replace('/', '_')}.png"
            save_overlay(path, image, anomaly_map, mask, (low, high), f"{names[i]}  score {scores[i]:.3f}")
        if not ctx.is_main_process:
            return
        write_scores(scores_path, names, scores)
        for i in sorted(overlay_at):
            path = ctx.step_dir / "overlays" / f"{i:03d}_{names[i].replace('/', '_')}.png"
            ctx.add_figure(path, f"decodiff: {names[i]} (score {scores[i]:.3f})")

        threshold = self._threshold(scorer, ctx, synthetic, synthetic_scores)
        # what the predictor (`defectkit detect RUN_DIR ...`) needs to score new images as this step did
        write_json(
            ctx.step_dir / THRESHOLD_FILE,
            {
                **threshold,
                "checkpoint": os.path.relpath(checkpoint_path, ctx.run_dir),
                "detect_options": config.model_dump(),
                **({"validation_choice": choice} if choice else {}),
            },
        )
        ctx.log_metrics(
            {
                "test_images": len(test),
                "processes": world,
                "images_per_second": round(len(test) / seconds, 2),
                "threshold": round(threshold["threshold"], 6),
                "threshold_method": threshold["method"],
            }
        )

    def _threshold(self, scorer: AnomalyScorer, ctx, synthetic: dict | None, synthetic_scores=None) -> dict:
        """From the validation split; else from the train step's synthetic validation (its held-out good images,
        as they are and with pasted defects: F1-adaptive; ``synthetic_scores`` when validation_grid has scored
        it with these options already); else from the good training images (in-sample, so optimistic)."""
        samples, source = ctx.samples("val"), "val"
        if not samples and synthetic is not None:
            if synthetic_scores is None:
                track = self._track(ctx, "decodiff threshold (synthetic validation)")
                synthetic_scores = score_validation(scorer, synthetic, self.config.batch_size, track)[1]
            labels = synthetic["labels"].tolist()
            chosen = choose_threshold(labels, synthetic_scores.tolist(), self.config.threshold_percentile)
            return {**chosen, "source": "synthetic_val"}
        if not samples:
            good = [s for s in ctx.samples("train") if s.label == 0]
            # 32 spread over the list, so that every category of a multi-class run is represented
            samples, source = good[:: max(1, len(good) // 32)][:32], "train_good"
        labels: list[int] = []
        scores: list[float] = []
        for chunk, _, _, chunk_scores in self._score_samples(scorer, samples, ctx, f"decodiff threshold ({source})"):
            labels += [s.label for s in chunk]
            scores += chunk_scores
        return {**choose_threshold(labels, scores, self.config.threshold_percentile), "source": source}

    @staticmethod
    def _track(ctx, description: str):
        return lambda items, total, size: ctx.progress(items, total, description, "images", size)

    @staticmethod
    def _synthetic_validation(ctx, checkpoint_path: Path, required_by: str | None) -> dict | None:
        """The train step's synthetic validation when it is the one the checkpoint comes from."""
        from defectkit_decodiff.trainer import load_validation_set

        path = ctx.artifact("validation_set", required=False)
        if path is not None and path.parent == checkpoint_path.parent:
            return load_validation_set(path)
        if required_by:
            raise DefectkitError(
                f"decodiff: {required_by} needs the synthetic validation of the train step the checkpoint comes "
                "from; set validation_images in that train step (e.g. 12), or remove it"
            )
        return None

    def _choose_on_validation(self, checkpoint: Checkpoint, ctx, validation: dict):
        """The detect options of ``validation_grid`` that score the synthetic validation best: the options, the
        record for threshold.json and the chosen options' validation scores."""
        import itertools

        from pydantic import ValidationError

        grid = self.config.validation_grid
        codec = LatentCodec(checkpoint.config, ctx.device)
        best = None
        for values in itertools.product(*grid.values()):
            chosen = {k: int(v) if k in ("start_t", "sample_steps") else v for k, v in zip(grid, values, strict=True)}
            try:
                candidate = self.config.model_validate({**self.config.model_dump(), **chosen, "validation_grid": {}})
            except ValidationError as error:
                problem = error.errors()[0]
                raise DefectkitError(
                    f"decodiff: validation_grid: {chosen} is not a valid detect setting "
                    f"({'.'.join(map(str, problem['loc']))}: {problem['msg']})"
                ) from None
            scorer = AnomalyScorer(checkpoint, candidate, ctx.device, codec)
            track = self._track(ctx, f"decodiff validation_grid {chosen}")
            maps, scores = score_validation(scorer, validation, self.config.batch_size, track)
            image, pixel = validation_aurocs(validation, maps, scores)
            ctx.logger.info("decodiff: synthetic validation with %s: image AUROC %.3f, pixel AUROC %.3f", chosen, image, pixel)
            if best is None or image + pixel > best[0]:
                best = (image + pixel, candidate, chosen, image, pixel, scores)
        _, config, chosen, image, pixel, scores = best
        ctx.logger.info("decodiff: validation_grid chose %s", chosen)
        record = {"grid": grid, "chosen": chosen, "image_auroc": round(image, 4), "pixel_auroc": round(pixel, 4)}
        ctx.log_metrics({"val_image_auroc": record["image_auroc"], "val_pixel_auroc": record["pixel_auroc"]})
        return config, record, scores
