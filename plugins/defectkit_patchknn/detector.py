"""The ``patch_knn`` trainer and detector: recipe steps around :mod:`defectkit_patchknn.model`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defectkit.anomaly_maps import map_names, save_map, write_scores
from defectkit.data import Sample
from defectkit.errors import DataError, DefectkitError
from defectkit.overlays import pick_overlays, save_overlay
from defectkit_patchknn.config import PatchKNNDetectConfig, PatchKNNTrainConfig
from defectkit_patchknn.model import FeatureSettings, PatchKNNModel

BANK_FILE = "memory_bank.safetensors"
FEATURE_OPTIONS = ("backbone", "weights", "layers", "image_size", "seed")
FIT_OPTIONS = ("coreset_ratio", "coreset_projection")


def _chunks(items: Sequence[Sample], size: int) -> Iterator[Sequence[Sample]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_images(samples: Sequence[Sample], size: int) -> np.ndarray:
    """RGB images resized to ``size`` x ``size``: ``uint8 [B, S, S, 3]``."""
    return np.stack([np.asarray(s.load_image().resize((size, size), Image.Resampling.BILINEAR)) for s in samples])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``uint8 [B, S, S, 3]`` -> ``float [B, 3, S, S]`` in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A boolean mask at the working size (nearest neighbour: a mask stays exact, never blurred)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(image) > 127


def fit_model(config: PatchKNNTrainConfig, ctx) -> PatchKNNModel:
    """A model whose memory bank holds the coreset of the good training images' patch features."""
    good = [s for s in ctx.samples("train") if s.label == 0]
    if not good:
        raise DataError(
            "patch_knn: the train split has no good (label 0) images to fit on; check the recipe's data: block"
        )
    model = PatchKNNModel(FeatureSettings.from_config(config), ctx.device)
    size = model.settings.image_size
    batches = ctx.progress(
        _chunks(good, config.batch_size), total=len(good), description="patch_knn fit", unit="images", size=len
    )
    model.fit(
        (to_tensor(load_images(chunk, size)) for chunk in batches), config.coreset_ratio, config.coreset_projection
    )
    ctx.logger.info(
        "patch_knn: memory bank of %d patches x %d features from %d good images",
        *model.bank.shape,
        model.train_images,
    )
    return model


def _bank_metrics(model: PatchKNNModel) -> dict[str, int]:
    return {
        "memory_bank_size": int(model.bank.shape[0]),
        "feature_dim": int(model.bank.shape[1]),
        "train_images": model.train_images,
    }


class PatchKNNTrainer:
    """Fits the memory bank (no gradient training) and saves it as the ``checkpoint`` artifact."""

    def __init__(self, config: PatchKNNTrainConfig) -> None:
        self.config = config

    def train(self, ctx) -> None:
        path = ctx.step_dir / BANK_FILE
        # a single process builds the bank: it is one pass over the good images, not worth sharding
        if ctx.is_main_process:
            if ctx.resume and path.exists():  # written atomically, so a file that exists is complete
                model = PatchKNNModel.load(path, ctx.device)
                ctx.logger.info("patch_knn: resumed with the memory bank in %s", path)
            else:
                model = fit_model(self.config, ctx)
                model.save(path)
            ctx.log_metrics(_bank_metrics(model))
        ctx.add_artifact("checkpoint", path)


class PatchKNNDetector:
    """Scores the test images against a memory bank: the ``checkpoint`` artifact, or one fitted on the fly."""

    def __init__(self, config: PatchKNNDetectConfig) -> None:
        self.config = config

    def open_predictor(self, run_dir: str | Path, step_id: str, device: str = "auto"):
        """The finished step ``step_id`` made ready for new images (``defectkit detect``, ``defectkit serve``)."""
        from defectkit_patchknn.predictor import PatchKNNPredictor

        return PatchKNNPredictor(self.config, run_dir, step_id, device)

    def detect(self, ctx) -> None:
        maps_dir = ctx.step_dir / "anomaly_maps"
        scores_path = ctx.step_dir / "scores.csv"
        if ctx.is_main_process:
            self._detect(ctx, maps_dir, scores_path)
        ctx.add_artifact("anomaly_maps", maps_dir)
        ctx.add_artifact("scores", scores_path)

    def _model(self, ctx) -> PatchKNNModel:
        path = ctx.artifact("checkpoint", required=False)
        if path is None:
            ctx.logger.info("patch_knn: no checkpoint artifact, fitting the memory bank on the train split")
            model = fit_model(self.config, ctx)
            ctx.log_metrics(_bank_metrics(model))
            return model
        if path.is_dir():
            path = path / BANK_FILE
        model = PatchKNNModel.load(path, ctx.device)
        self._check_settings(model.settings, path, ctx)
        return model

    def _check_settings(self, settings: FeatureSettings, path: Path, ctx) -> None:
        """The checkpoint's feature settings rule; a contradicting option the user set is an error, not ignored."""
        wanted = FeatureSettings.from_config(self.config)
        for name in FEATURE_OPTIONS:
            if name in self.config.model_fields_set and getattr(wanted, name) != getattr(settings, name):
                raise DefectkitError(
                    f"patch_knn: detect sets {name}={getattr(wanted, name)!r} but the memory bank in {path} was "
                    f"built with {getattr(settings, name)!r}; drop the option (the bank's settings are used) "
                    "or change it in the train step"
                )
        ignored = [name for name in FIT_OPTIONS if name in self.config.model_fields_set]
        if ignored:
            ctx.logger.warning(
                "patch_knn: %s only apply when fitting; the bank in %s is used", ", ".join(ignored), path
            )

    def _detect(self, ctx, maps_dir: Path, scores_path: Path) -> None:
        config = self.config
        test = ctx.samples("test")
        if not test:
            raise DataError("patch_knn: the test split is empty: nothing to score")
        names = map_names(test, "patch_knn")
        model = self._model(ctx)
        size = model.settings.image_size
        overlay_at = set(pick_overlays([s.defect_type for s in test], [s.label for s in test], config.overlays))

        scores: list[float] = []
        pixel_scores: list[np.ndarray] = []
        pixel_masks: list[np.ndarray] | None = []  # None once any test mask is unknown
        kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        low, high = math.inf, -math.inf
        started = time.perf_counter()
        batches = ctx.progress(
            _chunks(test, config.batch_size), total=len(test), description="patch_knn", unit="images", size=len
        )
        for chunk in batches:
            images = load_images(chunk, size)
            result = model.score(to_tensor(images), config.blur_sigma, config.image_score, config.reweight_neighbors)
            maps = result.maps.float().cpu().numpy()
            low, high = min(low, float(maps.min())), max(high, float(maps.max()))
            for j, (sample, anomaly_map) in enumerate(zip(chunk, maps, strict=True)):
                i = len(scores)
                save_map(maps_dir, names[i], anomaly_map)
                scores.append(float(result.image_scores[j]))
                mask = sample.load_mask()
                mask = None if mask is None else resize_mask(mask, size)
                if pixel_masks is not None and mask is not None:
                    pixel_scores.append(anomaly_map.ravel())
                    pixel_masks.append(mask.ravel())
                else:
                    pixel_masks = None
                if i in overlay_at:
                    kept[i] = (images[j], anomaly_map, mask)
        seconds = time.perf_counter() - started

        write_scores(scores_path, names, scores)
        for i, (image, anomaly_map, mask) in sorted(kept.items()):
            path = ctx.step_dir / "overlays" / f"{i:03d}_{names[i].replace('/', '_')}.png"
            save_overlay(path, image, anomaly_map, mask, (low, high), f"{names[i]}  score {scores[i]:.3f}")
            ctx.add_figure(path, f"patch_knn: {names[i]} (score {scores[i]:.3f})")

        metrics = {"test_images": len(test), "images_per_second": round(len(test) / seconds, 2)}
        metrics.update(_aurocs([s.label for s in test], scores, pixel_scores, pixel_masks))
        ctx.log_metrics(metrics)
        ctx.logger.info("patch_knn: %s", ", ".join(f"{k}={v}" for k, v in metrics.items()))


def _aurocs(
    labels: list[int], scores: list[float], pixel_scores: list[np.ndarray], pixel_masks: list[np.ndarray] | None
) -> dict[str, float]:
    """Image and pixel AUROC where the test set allows them (both classes present, every mask known)."""
    from sklearn.metrics import roc_auc_score

    figures = {}
    if len(set(labels)) == 2:
        figures["image_auroc"] = float(roc_auc_score(labels, scores))
    if pixel_masks:
        truth = np.concatenate(pixel_masks)
        if 0 < truth.sum() < truth.size:
            figures["pixel_auroc"] = float(roc_auc_score(truth, np.concatenate(pixel_scores)))
    return figures
