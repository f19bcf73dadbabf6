"""The metric components: each factory takes its config and returns an object with ``evaluate(ctx)``.

Inputs come from earlier steps' artifacts (docs/artifacts.md) and the
recipe's samples; each ``evaluate`` returns ``{figure: value}`` for
metrics.json (floats, plus the extractor's name next to a figure that depends on one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectkit.data.sample import Sample
from defectkit.errors import DefectkitError
from defectkit.generated import COMPARISON_SHEET, comparison_sheet
from defectkit_metrics import configs
from defectkit_metrics.detection import DETECTION_KEYS, detection_metrics
from defectkit_metrics.inputs import (
    GeneratedImage,
    MissingInputError,
    load_masks,
    read_generated,
    read_maps,
    read_predictions,
    read_scores,
    sample_stem,
)

# -- detection ----------------------------------------------------------------------------


def evaluate_map_folder(
    samples: Sequence[Sample],
    maps_dir: Path,
    scores_path: Path | None = None,
    fpr_limit: float = 0.3,
    device: Any = None,
    keys: Sequence[str] = DETECTION_KEYS,
) -> dict[str, float]:
    """Detection figures of the maps in ``maps_dir`` against ``samples``' ground truth.

    With samples of several object classes (a multi-category recipe), maps lie
    under ``<object_class>/`` and the figures are computed per class, reported
    as ``<object_class>/<key>``, and averaged into the plain keys (as the
    papers average over categories).
    """
    if not samples:
        raise DefectkitError("no test samples to evaluate the anomaly maps against")
    classes = sorted({s.object_class for s in samples})
    with_class = len(classes) > 1
    maps = read_maps(maps_dir, samples, with_class)
    scores = read_scores(scores_path, samples, with_class) if scores_path is not None else None
    masks = load_masks(samples)
    labels = np.asarray([s.label for s in samples])
    if not with_class:
        return detection_metrics(scores, labels, maps, masks, fpr_limit, device, keys)
    out: dict[str, float] = {}
    per_class = []
    for cls in classes:
        idx = [i for i, s in enumerate(samples) if s.object_class == cls]
        figures = detection_metrics(
            None if scores is None else scores[idx],
            labels[idx],
            [maps[i] for i in idx],
            [masks[i] for i in idx],
            fpr_limit,
            device,
            keys,
        )
        per_class.append(figures)
        out.update({f"{cls}/{k}": v for k, v in figures.items()})
    means = {k: float(np.mean([f[k] for f in per_class])) for k in per_class[0]}
    return {**means, **out}


class DetectionMetric:
    """All seven detection figures from the ``anomaly_maps`` (and optional ``scores``) artifacts."""

    keys: tuple[str, ...] = DETECTION_KEYS

    def __init__(self, config: configs.DetectionConfig) -> None:
        self.config = config

    def evaluate(self, ctx: Any) -> dict[str, float]:
        return evaluate_map_folder(
            ctx.samples(self.config.split),
            ctx.artifact("anomaly_maps"),
            ctx.artifact("scores", required=False),
            self.config.fpr_limit,
            ctx.device,
            self.keys,
        )


class ImageAurocMetric(DetectionMetric):
    keys = ("image_auroc",)


class ImageApMetric(DetectionMetric):
    keys = ("image_ap",)


class ImageF1MaxMetric(DetectionMetric):
    keys = ("image_f1max",)


class PixelAurocMetric(DetectionMetric):
    keys = ("pixel_auroc",)


class PixelApMetric(DetectionMetric):
    keys = ("pixel_ap",)


class PixelF1MaxMetric(DetectionMetric):
    keys = ("pixel_f1max",)


class PixelAuproMetric(DetectionMetric):
    keys = ("pixel_aupro",)


# -- generation ---------------------------------------------------------------------------


class _GenerationMetric:
    """Reads the ``generated_images`` artifact and the real images of ``config.real_split``."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def evaluate(self, ctx: Any) -> dict[str, Any]:
        generated = read_generated(ctx.artifact("generated_images"))
        types = sorted({g.defect_type for g in generated})
        real = [s for s in ctx.samples(self.config.real_split) if s.defect_type in types]
        if not real:
            raise MissingInputError(
                f"split {self.config.real_split!r} has no real image of the generated defect types ({', '.join(types)})"
            )
        _comparison_figure(ctx, generated, real)
        figures = self.measure(ctx, generated, real)
        if self.config.per_defect_type and len(types) > 1:
            for defect_type in types:
                sub_gen = [g for g in generated if g.defect_type == defect_type]
                sub_real = [s for s in real if s.defect_type == defect_type]
                if not sub_real:
                    # a combined group (DefectFill's hole+color) has no real images of its own: no per-type figure
                    ctx.logger.info(
                        "%s: no real %r image in split %r: no per-type figure for it",
                        type(self).__name__, defect_type, self.config.real_split,
                    )
                    continue
                for key, value in self.measure(ctx, sub_gen, sub_real).items():
                    if isinstance(value, float):
                        figures[f"{key}/{defect_type}"] = value
        return figures

    def images(self, items: Sequence[GeneratedImage | Sample]):
        from defectkit_metrics.generation import load_images

        return load_images([g.path if isinstance(g, GeneratedImage) else g for g in items], self.config.image_size)

    def measure(self, ctx: Any, generated: list[GeneratedImage], real: list[Sample]) -> dict[str, Any]:
        raise NotImplementedError  # every metric below defines it


class FIDMetric(_GenerationMetric):
    """Fréchet distance between real and generated feature statistics (lower is closer)."""

    def measure(self, ctx, generated, real):
        from defectkit_metrics.generation import fid

        return fid(self.images(real), self.images(generated), self.config.extractor, ctx.device, self.config.batch_size)


class KIDMetric(_GenerationMetric):
    """Kernel inception distance, mean and std over random subsets."""

    def measure(self, ctx, generated, real):
        from defectkit_metrics.generation import kid

        c = self.config
        return kid(
            self.images(real), self.images(generated), c.extractor, ctx.device, c.subset_size, c.subsets, c.batch_size
        )


class InceptionScoreMetric(_GenerationMetric):
    """Inception Score of the generated images (real images are not used)."""

    def measure(self, ctx, generated, real):
        from defectkit_metrics.generation import inception_score

        c = self.config
        return inception_score(self.images(generated), c.extractor, ctx.device, c.splits, c.batch_size)


def _comparison_figure(ctx: Any, generated: list[GeneratedImage], real: list[Sample]) -> None:
    """Real against generated images per defect type, once per evaluate step, shown in the report."""
    path = ctx.step_dir / COMPARISON_SHEET
    if path.exists():
        return  # an earlier generation metric of this step drew it
    comparison_sheet(real, generated, path)
    ctx.add_figure(path, "real (left) and generated (right) images, one row per defect type")


def _pairing(config: Any, generated: Sequence[GeneratedImage]) -> str:
    if config.pairing != "auto":
        return config.pairing
    return "source" if all(g.source for g in generated) else "nearest"


def _sources(ctx: Any, generated: Sequence[GeneratedImage]) -> list[Sample]:
    """The real sample each generated image names in ``source`` (a sample id or image file name)."""
    pool = {}
    # gen_train too: a generator's source is usually one of its training images, which protocol
    # "generation" keeps out of train and test
    for split in ("train", "test", "gen_train", "gen_eval"):
        for sample in ctx.samples(split):
            pool.setdefault(sample.id, sample)
            if sample.image_path is not None:
                pool.setdefault(sample.image_path.name, sample)
    out = []
    for g in generated:
        if not g.source:
            raise MissingInputError(f"{g.path}: pairing 'source' needs a 'source' field in metadata.jsonl")
        if g.source not in pool:
            raise MissingInputError(f"{g.path}: source {g.source!r} is not a sample id or image name of the dataset")
        out.append(pool[g.source])
    return out


class _PairedMetric(_GenerationMetric):
    """A per-pair figure between each generated image and its source or nearest real image."""

    key = ""
    higher_is_closer = True

    def distance(self, ctx: Any) -> Callable:
        raise NotImplementedError  # every metric below defines it

    def extra(self) -> dict[str, Any]:
        return {}

    def measure(self, ctx, generated, real):
        import torch

        from defectkit_metrics.generation import all_pairs, paired

        distance = self.distance(ctx)
        pairing = _pairing(self.config, generated)
        fake = self.images(generated)
        if pairing == "source":
            values = paired(fake, self.images(_sources(ctx, generated)), distance, ctx.device, self.config.batch_size)
        else:
            real_images = self.images(real)
            parts = []
            for defect_type in sorted({g.defect_type for g in generated}):
                f_idx = [i for i, g in enumerate(generated) if g.defect_type == defect_type]
                r_idx = [i for i, s in enumerate(real) if s.defect_type == defect_type]
                matrix = all_pairs(fake[f_idx], real_images[r_idx], distance, ctx.device, self.config.batch_size)
                parts.append(matrix.max(dim=1).values if self.higher_is_closer else matrix.min(dim=1).values)
            values = torch.cat(parts)
        return {self.key: float(values.mean()), f"{self.key}_pairing": pairing, **self.extra()}


class LPIPSMetric(_PairedMetric):
    """LPIPS from each generated image to its source (or nearest) real image; lower is closer."""

    key = "lpips"
    higher_is_closer = False

    def distance(self, ctx):
        from defectkit_metrics.extractors import lpips_distance

        return lpips_distance(self.config.extractor, ctx.device)

    def extra(self):
        return {"lpips_extractor": self.config.extractor}


class SSIMMetric(_PairedMetric):
    """SSIM of each generated image with its source (or most similar) real image."""

    key = "ssim"

    def distance(self, ctx):
        from defectkit_metrics.generation import ssim_distance

        return ssim_distance


class EdgeSSIMMetric(_PairedMetric):
    """SSIM of Sobel or Canny edge maps of each generated image and its source (or most similar) real image."""

    key = "edge_ssim"

    def distance(self, ctx):
        from defectkit_metrics.generation import edge_ssim_distance

        return edge_ssim_distance(self.config.edges, self.config.canny_sigma)

    def extra(self):
        return {"edge_ssim_edges": self.config.edges}


class ICLPIPSMetric(_GenerationMetric):
    """Intra-cluster LPIPS around the generator's training images (higher = more diverse)."""

    def measure(self, ctx, generated, real):
        from defectkit_metrics.extractors import lpips_distance
        from defectkit_metrics.generation import ic_lpips

        types = {g.defect_type for g in generated}
        centres = [s for s in ctx.samples(self.config.cluster_split) if s.defect_type in types]
        if not centres:
            raise MissingInputError(
                f"ic_lpips: split {self.config.cluster_split!r} has no image of the generated types"
            )
        value = ic_lpips(
            self.images(generated),
            [g.defect_type for g in generated],
            self.images(centres),
            [s.defect_type for s in centres],
            lpips_distance(self.config.extractor, ctx.device),
            ctx.device,
            self.config.batch_size,
        )
        return {"ic_lpips": value, "ic_lpips_extractor": self.config.extractor}


class LBPMetric(_GenerationMetric):
    """Texture similarity of pooled uniform-LBP histograms per defect type."""

    def measure(self, ctx, generated, real):
        from defectkit_metrics.generation import lbp_similarity

        return lbp_similarity(
            self.images(generated),
            [g.defect_type for g in generated],
            self.images(real),
            [s.defect_type for s in real],
            self.config.points,
            self.config.radius,
        )


class CLIPScoreMetric(_GenerationMetric):
    """Agreement of each generated image with its prompt (metadata ``prompt``, else the template)."""

    def measure(self, ctx, generated, real):
        from defectkit_metrics.generation import clip_score

        c = self.config
        prompts = []
        for g in generated:
            prompt = g.record.get(c.prompt_field)
            prompts.append(
                str(prompt) if prompt else c.prompt_template.format(defect_type=g.defect_type.replace("_", " "))
            )
        return clip_score([g.path for g in generated], prompts, c.model, c.pretrained, ctx.device, c.batch_size)


# -- classification and segmentation --------------------------------------------------------


class ClassificationMetric:
    """Accuracy, per-class precision/recall/F1 and a confusion-matrix PNG from the ``predictions`` CSV."""

    def __init__(self, config: configs.ClassificationConfig) -> None:
        self.config = config

    def evaluate(self, ctx: Any) -> dict[str, float]:
        from defectkit import io as dkio
        from defectkit_metrics.classification import classification_metrics, save_confusion_png

        rows = read_predictions(ctx.artifact("predictions"))
        labels = [r.label for r in rows]
        predictions = [r.prediction for r in rows]
        classes = self.config.classes or sorted(set(labels) | set(predictions))
        result = classification_metrics(labels, predictions, classes)
        dkio.write_json(ctx.step_dir / "confusion_matrix.json", {"classes": classes, "matrix": result["confusion"]})
        if self.config.figure:
            path = save_confusion_png(result["confusion"], classes, ctx.step_dir / "confusion_matrix.png")
            ctx.add_figure(path, "confusion matrix (rows: true class, columns: predicted)")
        return result["figures"]


class SegmentationMetric:
    """IoU and Dice of the predicted masks named in the ``predictions`` CSV against the samples' masks."""

    def __init__(self, config: configs.SegmentationConfig) -> None:
        self.config = config

    def evaluate(self, ctx: Any) -> dict[str, float]:
        from defectkit_metrics.classification import load_binary_mask, segmentation_metrics

        csv_path = ctx.artifact("predictions")
        rows = read_predictions(csv_path)
        samples = {s.id: s for s in ctx.samples(self.config.split)}
        by_stem = {sample_stem(s): s for s in samples.values()}
        predicted, truth = [], []
        for row in rows:
            sample = samples.get(row.id) or by_stem.get(Path(row.id).stem)
            if sample is None:
                raise MissingInputError(f"{csv_path}: id {row.id!r} is not a {self.config.split} sample")
            if row.mask is None:
                raise MissingInputError(
                    f"{csv_path}: row {row.id!r} has no 'mask' column value; segmentation needs one"
                )
            true = load_masks([sample])[0]
            truth.append(true)
            predicted.append(load_binary_mask(row.mask, true.shape))
        return segmentation_metrics(predicted, truth)
