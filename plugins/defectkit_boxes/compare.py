"""``box_compare``: does adding generated images help a box detector trained on real ones?

The boxes counterpart of ``augment_compare`` (docs/augment.md), with the same protocol: for each seed the
same torchvision detector (same initial weights, the same number of optimizer steps, batch size and
learning-rate schedule) is trained on the real training images, and on the real plus the generated ones;
both are scored (map50) on the same held-out real images. The per-seed differences give the gain's mean and
a Student-t 95 % interval, reported whatever its sign.

Generated images need boxes: each connected region of the mask a generator wrote (``masks/`` in the
``generated_images`` layout) becomes a box of the image's class. A generator without masks
(``text2image_scratch``) cannot feed a box detector; that is an error naming it.

Each finished (seed, arm) is saved under ``results/``: ``--resume`` redoes only what was not finished.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectkit.data.sample import NORMAL, Box, Sample
from defectkit.errors import DataError
from defectkit.io import atomic_path, write_json
from defectkit.stats import first_per_class, t_interval
from defectkit.training import warmup_cosine
from defectkit_boxes.config import BoxCompareConfig
from defectkit_boxes.models import build_model
from defectkit_boxes.records import box_classes
from defectkit_boxes.train import BoxData, batch_inputs, map50_on, model_meta

ARMS = ("real", "augmented")


def mask_boxes(mask: np.ndarray, label: str, min_pixels: int) -> tuple[Box, ...]:
    """One box per 8-connected region of ``mask`` with at least ``min_pixels`` pixels."""
    from scipy import ndimage

    regions, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    boxes = []
    for index, found in enumerate(ndimage.find_objects(regions), start=1):
        if found is not None and int((regions[found] == index).sum()) >= min_pixels:
            rows, cols = found
            boxes.append(Box(cols.start, rows.start, cols.stop, rows.stop, label))
    return tuple(boxes)


class BoxCompare:
    def __init__(self, config: BoxCompareConfig | None = None) -> None:
        self.config = config or BoxCompareConfig()

    def _generated(self, ctx, classes: list[str]) -> list[Sample]:
        from defectkit.generated import read_generated

        c = self.config
        generated = [g for g in read_generated(ctx.artifact("generated_images")) if g.defect_type != NORMAL]
        unmasked = [g for g in generated if g.mask_path is None]
        if unmasked:
            raise DataError(
                f"box_compare: {len(unmasked)} of the {len(generated)} generated images have no mask (first: "
                f"{unmasked[0].image_path}), so no boxes; use a generator that writes masks (defectfill, inpainting)"
            )
        foreign = sorted({g.defect_type for g in generated} - set(classes))
        if foreign:
            raise DataError(
                f"box_compare: generated images of {', '.join(foreign)}, which the real training split "
                f"({', '.join(classes)}) has no boxes of"
            )
        with_boxes = [
            dataclasses.replace(g, boxes=mask_boxes(g.load_mask(), g.defect_type, c.min_box_pixels)) for g in generated
        ]
        kept = [g for g in with_boxes if g.boxes]
        if not kept:
            raise DataError("box_compare: no generated mask has a region of min_box_pixels or more")
        return first_per_class(kept, c.generated_per_class)

    def _fit_and_score(self, ctx, classes, data: BoxData, held_out, seed: int, arm: str) -> dict[str, Any]:
        c = self.config
        device = ctx.device
        torch.manual_seed(seed)  # the same initial weights for both arms of a seed
        model = build_model(model_meta(c, classes), pretrained=True).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(c.warmup_steps, c.steps))
        order, flips = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 7919)
        model.train()
        batches, running = iter(()), []
        for step in ctx.progress(range(c.steps), total=c.steps, description=f"box_compare seed {seed} {arm}"):
            # batches walk through shuffled passes over the arm's images: the same steps, whatever its size
            indices = next(batches, None)
            if indices is None:
                batches = data.batches(c.batch_size, order, 0, 1)
                indices = next(batches)
            inputs, targets = batch_inputs(data, indices, c, flips, device)
            loss = sum(model(inputs, targets).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running.append(float(loss.detach()))
            if (step + 1) % c.log_every == 0:
                ctx.log_scalar(f"loss/{arm}_seed{seed}", float(np.mean(running)), step + 1)
                running = []
        score = map50_on(model, held_out, classes, device, f"box_compare ({c.eval_split})")
        return {"seed": seed, "arm": arm, "train_images": len(data), "map50": score}

    def train(self, ctx) -> None:
        c = self.config
        if c.cpu_threads and ctx.device.type == "cpu":
            torch.set_num_threads(c.cpu_threads)
        real = [s for s in ctx.samples(c.train_split) if c.include_good or s.label == 1]
        real = first_per_class(real, c.real_per_class)
        classes = box_classes(real, c.classes, f"box_compare ({c.train_split})")
        held_out = ctx.samples(c.eval_split)
        if not any(s.boxes for s in held_out):
            raise DataError(f"box_compare: split {c.eval_split!r} has no image with boxes to score on")
        generated = self._generated(ctx, classes)
        real_data = BoxData(real, classes, f"box_compare ({c.train_split})")
        both = BoxData(real + generated, classes, "box_compare (generated)")
        data = {"real": real_data, "augmented": both}
        ctx.logger.info(
            f"box_compare: {len(classes)} classes, {len(real)} real + {len(generated)} generated training images, "
            f"{len(held_out)} held-out real images, seeds {c.seeds}"
        )
        results_dir = ctx.step_dir / "results"
        results = []
        for seed in c.seeds:
            for arm in ARMS:
                path = results_dir / f"seed{seed}_{arm}.json"
                if ctx.resume and path.is_file():
                    results.append(json.loads(path.read_text(encoding="utf-8")))
                    continue
                result = self._fit_and_score(ctx, classes, data[arm], held_out, seed, arm)
                write_json(path, result)
                results.append(result)
                ctx.logger.info(f"box_compare seed {seed} {arm}: map50 {result['map50']:.3f}")
        summary = summarise(results, c.seeds)
        summary.update(real_train_images=len(real), generated_images=len(generated), eval_images=len(held_out))
        write_json(ctx.step_dir / "comparison.json", {"summary": summary, "runs": results, "classes": classes})
        ctx.add_artifact("comparison", ctx.step_dir / "comparison.json")
        plot(results, summary, ctx.step_dir / "comparison.png")
        ctx.add_figure(ctx.step_dir / "comparison.png", "held-out map50 per seed: real only against real + generated")
        ctx.log_metrics(summary)


def summarise(results: list[dict], seeds: list[int]) -> dict[str, float]:
    """Mean and std per arm, and the paired gain (augmented − real) with its 95 % t-interval."""
    by = {(r["seed"], r["arm"]): r["map50"] for r in results}
    out: dict[str, float] = {"seeds": len(seeds)}
    for arm in ARMS:
        values = [by[(s, arm)] for s in seeds]
        out[f"{arm}/map50_mean"], out[f"{arm}/map50_std"] = float(np.mean(values)), float(np.std(values, ddof=1))
    gains = [by[(s, "augmented")] - by[(s, "real")] for s in seeds]
    low, high = t_interval(gains)
    out.update(
        {
            "gain/map50_mean": float(np.mean(gains)),
            "gain/map50_std": float(np.std(gains, ddof=1)),
            "gain/map50_ci95_low": low,
            "gain/map50_ci95_high": high,
        }
    )
    return out


def plot(results: list[dict], summary: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    by = {(r["seed"], r["arm"]): r["map50"] for r in results}
    seeds = sorted({r["seed"] for r in results})
    figure = Figure(figsize=(4.4, 3.3), dpi=100)
    axes = figure.subplots()
    for seed in seeds:
        axes.plot([0, 1], [by[(seed, arm)] for arm in ARMS], marker="o", color="0.6", lw=1)
    for x, arm in enumerate(ARMS):
        axes.errorbar(
            [x], [summary[f"{arm}/map50_mean"]], yerr=[summary[f"{arm}/map50_std"]], fmt="s", color="C3", capsize=4
        )
    axes.set_xticks([0, 1], ["real", "real + generated"])
    axes.set_xlim(-0.4, 1.4)
    axes.set_ylabel("map50 on held-out real images")
    gain, low, high = (summary[f"gain/map50_{k}"] for k in ("mean", "ci95_low", "ci95_high"))
    axes.set_title(f"gain {gain:+.3f} (95% CI {low:+.3f} … {high:+.3f}), {len(seeds)} seeds", fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
