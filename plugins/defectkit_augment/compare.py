"""``augment_compare``: does adding generated images help a detector trained on real ones?

For each seed the same classifier (same initialisation, same number of
optimizer steps and batch size) is trained twice: on the real training images,
and on the real plus the generated ones (the ``generated_images`` artifact of an
earlier step). Both are scored on the same held-out real images. The per-seed
differences give the gain's mean, standard deviation and a Student-t 95 %
interval: the figure is reported whatever its sign.

Each finished (seed, arm) is saved under ``results/``, so ``--resume`` after an
interruption redoes only what was not finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectkit.data.sample import NORMAL
from defectkit.errors import DataError
from defectkit.generated import read_generated
from defectkit.io import write_json
from defectkit.stats import first_per_class, t_interval
from defectkit.vision import image_batch, small_cnn
from defectkit_augment.config import AugmentCompareConfig

ARMS = ("real", "augmented")
FIGURES = ("accuracy", "f1_macro")


def build_model(name: str, classes: int) -> nn.Module:
    if name == "resnet18":
        from torchvision.models import resnet18

        return resnet18(weights=None, num_classes=classes)
    return small_cnn(classes)


class AugmentCompare:
    def __init__(self, config: AugmentCompareConfig | None = None) -> None:
        self.config = config or AugmentCompareConfig()

    # -- data ---------------------------------------------------------------------------

    def _classes_and_data(self, ctx: Any):
        c = self.config
        keep = (lambda s: True) if c.include_good else (lambda s: s.defect_type != NORMAL)
        real = first_per_class([s for s in ctx.samples(c.train_split) if keep(s)], c.real_per_class)
        held_out = [s for s in ctx.samples(c.eval_split) if keep(s)]
        classes = sorted({s.defect_type for s in real})
        if len(classes) < 2:
            raise DataError(
                f"augment_compare: split {c.train_split!r} has {len(classes)} labelled class(es) ({', '.join(classes) or 'none'}); "
                "it needs two or more defect types (a NEU-like dataset, or data.split.protocol: generation)"
            )
        missing = sorted({s.defect_type for s in held_out} - set(classes))
        if missing or not held_out:
            raise DataError(
                f"augment_compare: split {c.eval_split!r} "
                + (
                    f"has classes the training split lacks: {', '.join(missing)}"
                    if missing
                    else "has no image of the classes"
                )
            )
        generated = [g for g in read_generated(ctx.artifact("generated_images")) if keep(g)]
        foreign = sorted({g.defect_type for g in generated} - set(classes))
        if foreign:
            raise DataError(
                f"augment_compare: generated images of {', '.join(foreign)}, which the real training split "
                f"({', '.join(classes)}) does not have"
            )
        if not generated:
            raise DataError("augment_compare: the generated_images artifact has no image of the classes")
        return classes, real, first_per_class(generated, c.generated_per_class), held_out

    # -- one training -------------------------------------------------------------------

    def _fit_and_score(self, ctx, classes, images, labels, eval_images, eval_labels, seed: int, arm: str) -> dict:
        from defectkit_metrics.api import classification_metrics

        c = self.config
        device = ctx.device
        torch.manual_seed(seed)  # the same initial weights for both arms of a seed
        model = build_model(c.model, len(classes)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.steps)
        generator = torch.Generator().manual_seed(seed)
        mean = torch.tensor([0.5, 0.5, 0.5], device=device).view(1, 3, 1, 1)
        model.train()
        order, position, running = torch.randperm(len(images), generator=generator), 0, []
        log_every = max(1, c.steps // 50)
        for step in range(c.steps):
            # batches walk through shuffled passes over the arm's images: the same steps, whatever its size
            index = order[position : position + c.batch_size]
            position += c.batch_size
            if position >= len(images):
                order, position = torch.randperm(len(images), generator=generator), 0
            x = images[index].to(device).float() / 255.0 - mean
            flip = torch.rand(x.shape[0], generator=generator) < 0.5  # the only augmentation: a horizontal flip
            x[flip] = x[flip].flip(-1)
            loss = nn.functional.cross_entropy(model(x), labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running.append(loss.item())
            if (step + 1) % log_every == 0:
                ctx.log_scalar(f"loss/{arm}_seed{seed}", float(np.mean(running)), step + 1)
                running = []
        model.eval()
        predictions = []
        with torch.no_grad():
            for start in range(0, len(eval_images), 256):
                x = eval_images[start : start + 256].to(device).float() / 255.0 - mean
                predictions.extend(model(x).argmax(1).tolist())
        result = classification_metrics(
            [classes[i] for i in eval_labels.tolist()], [classes[i] for i in predictions], classes
        )["figures"]
        return {"seed": seed, "arm": arm, "train_images": len(images), **{k: result[k] for k in FIGURES}}

    # -- the step -----------------------------------------------------------------------

    def train(self, ctx: Any) -> None:
        c = self.config
        classes, real, generated, held_out = self._classes_and_data(ctx)
        index = {name: i for i, name in enumerate(classes)}
        real_x, gen_x, eval_x = (image_batch(s, c.image_size) for s in (real, generated, held_out))
        real_y, gen_y, eval_y = (
            torch.tensor([index[s.defect_type] for s in group]) for group in (real, generated, held_out)
        )
        data = {"real": (real_x, real_y), "augmented": (torch.cat([real_x, gen_x]), torch.cat([real_y, gen_y]))}
        ctx.logger.info(
            f"augment_compare: {len(classes)} classes, {len(real)} real + {len(generated)} generated training images, "
            f"{len(held_out)} held-out real images, seeds {c.seeds}"
        )
        results_dir = ctx.step_dir / "results"
        results: list[dict] = []
        for seed in c.seeds:
            for arm in ARMS:
                path = results_dir / f"seed{seed}_{arm}.json"
                if ctx.resume and path.is_file():
                    results.append(json.loads(path.read_text(encoding="utf-8")))
                    continue
                x, y = data[arm]
                result = self._fit_and_score(ctx, classes, x, y, eval_x, eval_y, seed, arm)
                write_json(path, result)
                results.append(result)
                ctx.logger.info(
                    f"seed {seed} {arm}: accuracy {result['accuracy']:.3f}, macro F1 {result['f1_macro']:.3f}"
                )
        summary = summarise(results, c.seeds)
        summary.update(
            {
                "classes": classes,
                "real_train_images": len(real),
                "generated_images": len(generated),
                "eval_images": len(held_out),
            }
        )
        write_json(ctx.step_dir / "comparison.json", {"summary": summary, "runs": results})
        ctx.add_artifact("comparison", ctx.step_dir / "comparison.json")
        plot_comparison(results, summary, ctx.step_dir / "comparison.png")
        ctx.add_figure(
            ctx.step_dir / "comparison.png",
            "held-out accuracy and macro F1 per seed: real only against real + generated",
        )
        ctx.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})


def summarise(results: list[dict], seeds: list[int]) -> dict[str, float]:
    """Mean and std per arm, and the paired gain (augmented − real) with its 95 % t-interval."""
    by = {(r["seed"], r["arm"]): r for r in results}
    out: dict[str, float] = {"seeds": len(seeds)}
    for figure in FIGURES:
        for arm in ARMS:
            values = [by[(s, arm)][figure] for s in seeds]
            out[f"{arm}/{figure}_mean"] = float(np.mean(values))
            out[f"{arm}/{figure}_std"] = float(np.std(values, ddof=1))
        gains = [by[(s, "augmented")][figure] - by[(s, "real")][figure] for s in seeds]
        low, high = t_interval(gains)
        out[f"gain/{figure}_mean"] = float(np.mean(gains))
        out[f"gain/{figure}_std"] = float(np.std(gains, ddof=1))
        out[f"gain/{figure}_ci95_low"] = low
        out[f"gain/{figure}_ci95_high"] = high
    return out


def plot_comparison(results: list[dict], summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from defectkit.io import atomic_path

    by = {(r["seed"], r["arm"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(4.2 * len(FIGURES), 3.2), dpi=100)
    for ax, figure in zip(axes, FIGURES, strict=True):
        for seed in seeds:
            ax.plot([0, 1], [by[(seed, arm)][figure] for arm in ARMS], marker="o", color="0.6", lw=1)
        for x, arm in enumerate(ARMS):
            mean, std = summary[f"{arm}/{figure}_mean"], summary[f"{arm}/{figure}_std"]
            ax.errorbar([x], [mean], yerr=[std], fmt="s", color="C3", capsize=4, zorder=3)
        ax.set_xticks([0, 1], ["real", "real + generated"])
        ax.set_xlim(-0.4, 1.4)
        gain, low, high = (summary[f"gain/{figure}_{k}"] for k in ("mean", "ci95_low", "ci95_high"))
        ax.set_title(f"{figure}: gain {gain:+.3f} (95% CI {low:+.3f} … {high:+.3f})", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"held-out real images, {len(seeds)} seeds (grey: one seed; red: mean ± std)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
