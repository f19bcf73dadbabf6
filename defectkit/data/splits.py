"""Deterministic splits on top of a dataset's own train/test split."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from defectkit.data.sample import DefectDataset, Sample

if TYPE_CHECKING:
    from defectkit.recipe import SplitSpec

SPLITS = ("train", "val", "test", "gen_train", "gen_eval")


def apply_split(dataset: DefectDataset, split: str, spec: SplitSpec | None, seed: int) -> list[Sample]:
    """The samples of ``split`` under ``spec``.

    ``train``/``val``: ``val_fraction`` of the dataset's training samples, drawn
    with the split seed, become ``val`` (added to any the format has itself).
    ``gen_train``/``gen_eval``: the generation protocol of the defect-generation
    papers: per defect type, the first third of the defective samples by id
    trains the generator, the rest evaluates it.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    fraction = spec.val_fraction if spec is not None else 0.0
    split_seed = spec.seed if spec is not None and spec.seed is not None else seed
    if split in ("gen_train", "gen_eval"):
        defective = [s for s in dataset.samples("train") + dataset.samples("test") if s.label == 1]
        by_type: dict[str, list[Sample]] = {}
        for sample in sorted(defective, key=lambda s: s.id):
            by_type.setdefault(sample.defect_type, []).append(sample)
        chosen: list[Sample] = []
        for samples in by_type.values():
            cut = max(1, len(samples) // 3)
            chosen.extend(samples[:cut] if split == "gen_train" else samples[cut:])
        return chosen
    if split == "test" or fraction == 0.0:
        return list(dataset.samples(split))
    train = sorted(dataset.samples("train"), key=lambda s: s.id)
    order = list(range(len(train)))
    random.Random(split_seed).shuffle(order)
    n_val = round(len(train) * fraction)
    held = set(order[:n_val])
    if split == "val":
        return list(dataset.samples("val")) + [s for i, s in enumerate(train) if i in held]
    return [s for i, s in enumerate(train) if i not in held]
