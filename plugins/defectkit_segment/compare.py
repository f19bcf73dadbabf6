"""``segment_compare``: do generated image-mask pairs make a better defect segmenter?

Per seed, the same U-Net (same initial weights, same number of optimizer steps,
same batch composition and augmentation) is trained once per arm:

- ``real``: the real defective pairs of ``defect_split`` and the good images;
- ``real+<step>``: the same plus the pairs of each earlier generate step (one arm per step).

Every arm is scored on the same held-out real images (``eval_split``) by the
``detection`` metric, looked up by name in the registry as any metric is. The
paired per-seed differences give each generated arm's gain with a Student-t
95 % interval (:func:`defectkit.stats.t_interval`). When an earlier step wrote
``anomaly_maps`` on the same images (an unsupervised detector trained on good
images only, e.g. decodiff), they are scored too, as the ``reference``.

Each finished (seed, arm) is saved under ``results/``; ``--resume`` redoes only the rest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from defectkit.anomaly_maps import map_names, save_map
from defectkit.errors import DataError
from defectkit.io import atomic_path, write_json
from defectkit.stats import t_interval
from defectkit_segment.config import SegmentCompareConfig
from defectkit_segment.train import (
    Pairs,
    choose_threshold,
    fit,
    generated_samples,
    load_pairs,
    overlap,
    predict,
    real_samples,
)

FIGURES = ("pixel_auroc", "pixel_ap", "pixel_aupro", "image_auroc")
GAINS = FIGURES  # the issue asks for pixel_ap and pixel_aupro; the other two cost nothing more
REAL = "real"


class _MapsView:
    """What the ``detection`` metric reads from a step context, for maps this step wrote itself."""

    def __init__(self, samples: list, maps_dir: Path, scores: Path | None, device: Any) -> None:
        self._samples, self._maps, self._scores, self.device = samples, maps_dir, scores, device

    def samples(self, split: str) -> list:
        return self._samples

    def artifact(self, name: str, required: bool = True) -> Path | None:
        return {"anomaly_maps": self._maps, "scores": self._scores}.get(name)


def score_maps(samples: list, maps_dir: Path, scores: Path | None, fpr_limit: float, device: Any) -> dict[str, float]:
    """The four figures of the registry's ``detection`` metric for maps in the eval-maps layout."""
    from defectkit.plugins import get_registry

    metric = get_registry().get("metric", "detection").create({"fpr_limit": fpr_limit})
    figures = metric.evaluate(_MapsView(samples, maps_dir, scores, device))
    return {k: float(figures[k]) for k in FIGURES}


class SegmentCompare:
    def __init__(self, config: SegmentCompareConfig | None = None) -> None:
        self.config = config or SegmentCompareConfig()

    def train(self, ctx: Any) -> None:
        c = self.config
        who = f"step {ctx.step_id} (segment_compare)"
        defects, goods = real_samples(ctx, c, who)
        held_out = ctx.samples(c.eval_split)
        if not any(s.label == 1 for s in held_out) or not any(s.label == 0 for s in held_out):
            raise DataError(f"{who}: split {c.eval_split!r} needs both defective and good images to score on")
        held_ids = {s.id for s in held_out}
        leaked = [s.id for s in defects + goods if s.id in held_ids]
        if leaked:
            raise DataError(f"{who}: {leaked[0]} is in both the training and the evaluation split; split them apart")
        sources = ctx.artifacts("generated_images")
        if not sources:
            raise DataError(f"{who}: no earlier generate step produced generated_images")
        real_pairs = Pairs.cat(load_pairs(defects, c.image_size, who), load_pairs(goods, c.image_size, who))
        arms: dict[str, Pairs] = {REAL: real_pairs}
        counts = {REAL: 0}
        for step_id, root in sources.items():
            generated = generated_samples(root, c.generated_per_class, who)
            if not generated:
                raise DataError(f"{who}: {root} (step {step_id}) has no defective image")
            arms[f"{REAL}+{step_id}"] = Pairs.cat(real_pairs, load_pairs(generated, c.image_size, who))
            counts[f"{REAL}+{step_id}"] = len(generated)
        ctx.logger.info(
            f"segment_compare: {len(defects)} real defects + {len(goods)} good images; arms "
            + ", ".join(f"{a} (+{n} generated)" for a, n in counts.items())
            + f"; {len(held_out)} held-out real images, seeds {c.seeds}"
        )
        names = map_names(held_out, who)
        real_train = defects + goods
        results_dir = ctx.step_dir / "results"
        results: list[dict] = []
        for seed in c.seeds:
            for arm, pairs in arms.items():
                path = results_dir / f"seed{seed}_{arm}.json"
                if ctx.resume and path.is_file():
                    results.append(json.loads(path.read_text(encoding="utf-8")))
                    continue
                model = fit(ctx, c, pairs, seed, f"seed{seed}_{arm}")
                # the threshold for IoU/Dice comes from the real training pairs, never from the test images
                threshold = choose_threshold(
                    predict(model, real_train, c.image_size, ctx.device), [s.load_mask() for s in real_train]
                )
                maps = predict(model, held_out, c.image_size, ctx.device)
                scratch = ctx.step_dir / "scratch"
                shutil.rmtree(scratch, ignore_errors=True)
                for name, anomaly_map in zip(names, maps, strict=True):
                    save_map(scratch / "anomaly_maps", name, anomaly_map)
                figures = score_maps(held_out, scratch / "anomaly_maps", None, c.fpr_limit, ctx.device)
                figures.update(overlap(maps, [s.load_mask() for s in held_out], threshold))
                shutil.rmtree(scratch, ignore_errors=True)
                result = {"seed": seed, "arm": arm, "train_pairs": len(pairs), "threshold": threshold, **figures}
                write_json(path, result)
                results.append(result)
                ctx.logger.info(
                    f"seed {seed} {arm}: pixel AP {figures['pixel_ap']:.3f}, AUPRO {figures['pixel_aupro']:.3f}, "
                    f"pixel AUROC {figures['pixel_auroc']:.3f}, image AUROC {figures['image_auroc']:.3f}"
                )
        summary = summarise(results, c.seeds, list(arms))
        reference = ctx.artifact("anomaly_maps", required=False)
        if reference is not None:
            figures = score_maps(held_out, reference, ctx.artifact("scores", required=False), c.fpr_limit, ctx.device)
            summary.update({f"reference/{k}": v for k, v in figures.items()})
        summary.update(
            {"real_defects": len(defects), "good_images": len(goods), "eval_images": len(held_out)}
            | {f"{arm}/generated_pairs": n for arm, n in counts.items() if arm != REAL}
        )
        write_json(ctx.step_dir / "comparison.json", {"summary": summary, "runs": results})
        ctx.add_artifact("comparison", ctx.step_dir / "comparison.json")
        plot_comparison(results, summary, list(arms), ctx.step_dir / "comparison.png")
        ctx.add_figure(
            ctx.step_dir / "comparison.png",
            "held-out real images: each arm per seed (grey), mean ± std (red), the unsupervised reference (dashed)",
        )
        ctx.log_metrics(summary)


def summarise(results: list[dict], seeds: list[int], arms: list[str]) -> dict[str, Any]:
    """Per arm the mean and std of each figure; per generated arm the paired gain over ``real`` and its 95 % interval.

    Keys: ``<arm>/<figure>`` (mean), ``<arm>/<figure>_std``, ``gain/<arm>/<figure>`` (mean of the per-seed
    differences) and ``gain/<arm>/<figure>_ci95`` ([low, high], Student-t over the seeds).
    """
    by = {(r["seed"], r["arm"]): r for r in results}
    out: dict[str, Any] = {"seeds": len(seeds)}
    for arm in arms:
        for figure in (*FIGURES, "iou", "dice"):
            values = [by[(s, arm)][figure] for s in seeds]
            out[f"{arm}/{figure}"] = float(np.mean(values))
            out[f"{arm}/{figure}_std"] = float(np.std(values, ddof=1))
    for arm in arms:
        if arm == REAL:
            continue
        for figure in GAINS:
            gains = [by[(s, arm)][figure] - by[(s, REAL)][figure] for s in seeds]
            low, high = t_interval(gains)
            out[f"gain/{arm}/{figure}"] = float(np.mean(gains))
            out[f"gain/{arm}/{figure}_ci95"] = [low, high]
    return out


def plot_comparison(results: list[dict], summary: dict, arms: list[str], path: Path) -> Path:
    """One panel per figure: every seed across the arms, the mean ± std, the reference as a dashed line."""
    from matplotlib.figure import Figure

    by = {(r["seed"], r["arm"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    figure = Figure(figsize=(3.4 * len(FIGURES), 3.6), dpi=100)
    axes = figure.subplots(1, len(FIGURES))
    xs = np.arange(len(arms))
    for ax, key in zip(axes, FIGURES, strict=True):
        for seed in seeds:
            ax.plot(xs, [by[(seed, a)][key] for a in arms], marker="o", color="0.65", lw=1)
        means = [summary[f"{a}/{key}"] for a in arms]
        stds = [summary[f"{a}/{key}_std"] for a in arms]
        ax.errorbar(xs, means, yerr=stds, fmt="s", color="C3", capsize=4, zorder=3)
        if f"reference/{key}" in summary:
            ax.axhline(summary[f"reference/{key}"], ls="--", color="C0", lw=1, label="unsupervised reference")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(xs, [a.replace("+", "+\n") for a in arms], fontsize=8)
        ax.set_xlim(-0.4, len(arms) - 0.6)
        lines = [key]
        for a in arms[1:]:
            low, high = summary[f"gain/{a}/{key}_ci95"]
            lines.append(f"{a.removeprefix('real+')}: {summary[f'gain/{a}/{key}']:+.3f} [{low:+.3f}, {high:+.3f}]")
        ax.set_title("\n".join(lines), fontsize=8)
        ax.grid(alpha=0.3)
    figure.suptitle(f"held-out real images, {len(seeds)} seeds; title: gain over real [95% CI]", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
