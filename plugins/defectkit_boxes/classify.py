"""``classification_accuracy_score``: a classifier trained on real images labels the generated ones.

The share of generated images it labels as the class they were generated as, per class and overall, next
to the same classifier's accuracy on held-out real images: a classifier that cannot tell the real classes
apart says nothing about the generated ones. (This is Shmelkov et al.'s "GAN-test" direction, which the
issue names classification accuracy score; Ravuri and Vinyals' CAS trains on generated images and tests on
real ones, which ``augment_compare`` measures together with the real-only baseline.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from defectkit.data.sample import NORMAL
from defectkit.errors import DataError
from defectkit.vision import image_batch, small_cnn
from defectkit_boxes.config import ClassificationAccuracyConfig


class ClassificationAccuracyMetric:
    def __init__(self, config: ClassificationAccuracyConfig | None = None) -> None:
        self.config = config or ClassificationAccuracyConfig()

    def evaluate(self, ctx) -> dict[str, float]:
        from defectkit.generated import read_generated

        c = self.config
        keep = (lambda s: True) if c.include_good else (lambda s: s.defect_type != NORMAL)
        real = [s for s in ctx.samples(c.train_split) if keep(s)]
        classes = sorted({s.defect_type for s in real})
        if len(classes) < 2:
            raise DataError(
                f"classification_accuracy_score: split {c.train_split!r} has {len(classes)} class(es); "
                "a classifier needs two or more (NEU-like data, or data.split.protocol: generation)"
            )
        generated = [g for g in read_generated(ctx.artifact("generated_images")) if keep(g)]
        if not generated:
            raise DataError("classification_accuracy_score: the generated_images artifact has no image of the classes")
        foreign = sorted({g.defect_type for g in generated} - set(classes))
        if foreign:
            raise DataError(
                f"classification_accuracy_score: generated images of {', '.join(foreign)}, which the real split "
                f"{c.train_split!r} ({', '.join(classes)}) does not have"
            )
        model = self._fit(ctx, real, classes)
        figures: dict[str, float] = {"classification_accuracy_score_images": len(generated)}
        predicted = self._predict(model, generated, ctx.device)
        hits: dict[str, list[bool]] = {}
        for sample, index in zip(generated, predicted, strict=True):
            hits.setdefault(sample.defect_type, []).append(classes[index] == sample.defect_type)
        figures["classification_accuracy_score"] = float(np.mean([h for v in hits.values() for h in v]))
        for name in sorted(hits):
            figures[f"classification_accuracy_score/{name}"] = float(np.mean(hits[name]))
        held_out = (
            [s for s in ctx.samples(c.eval_split) if keep(s) and s.defect_type in classes] if c.eval_split else []
        )
        if held_out:
            predicted = self._predict(model, held_out, ctx.device)
            figures["classification_real_accuracy"] = float(
                np.mean([classes[i] == s.defect_type for s, i in zip(held_out, predicted, strict=True)])
            )
        return figures

    def _fit(self, ctx, samples, classes: list[str]) -> nn.Module:
        c = self.config
        seed = ctx.seed if c.seed is None else c.seed
        images = image_batch(samples, c.image_size)
        labels = torch.tensor([classes.index(s.defect_type) for s in samples])
        torch.manual_seed(seed)
        model = small_cnn(len(classes)).to(ctx.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.steps)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for step in ctx.progress(range(c.steps), total=c.steps, description="classifier on real images"):
            index = torch.randint(0, len(images), (min(c.batch_size, len(images)),), generator=generator)
            x = images[index].to(ctx.device).float() / 255.0 - 0.5
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
            loss = nn.functional.cross_entropy(model(x), labels[index].to(ctx.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if (step + 1) % max(1, c.steps // 50) == 0:
                ctx.log_scalar("classifier_loss", float(loss.detach()), step + 1)
        return model.eval()

    @torch.no_grad()
    def _predict(self, model: nn.Module, samples, device) -> list[int]:
        images = image_batch(samples, self.config.image_size)
        out: list[int] = []
        for start in range(0, len(images), 256):
            out += model(images[start : start + 256].to(device).float() / 255.0 - 0.5).argmax(1).tolist()
        return out
