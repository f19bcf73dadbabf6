"""Deterministic splits on top of a dataset's own train/test split."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from defectkit.data.sample import DefectDataset, Sample

if TYPE_CHECKING:
    from defectkit.recipe import SplitSpec

SPLITS = ("train", "val", "test", "gen_train", "gen_eval")


def generation_split(dataset: DefectDataset) -> tuple[list[Sample], list[Sample]]:
    """The generation protocol of the defect-generation papers (DefectFill, AnomalyDiffusion).

    Per category and defect type, the first third of the defective samples by id
    (at least one) trains the generator; the rest evaluate the detectors trained
    on what it generates. Returns ``(gen_train, gen_eval)``.
    """
    defective = [s for s in dataset.samples("train") + dataset.samples("test") if s.label == 1]
    by_type: dict[tuple[str, str], list[Sample]] = {}
    for sample in sorted(defective, key=lambda s: s.id):
        by_type.setdefault((sample.object_class, sample.defect_type), []).append(sample)
    gen_train: list[Sample] = []
    gen_eval: list[Sample] = []
    for samples in by_type.values():
        cut = max(1, len(samples) // 3)
        gen_train.extend(samples[:cut])
        gen_eval.extend(samples[cut:])
    return gen_train, gen_eval


def apply_split(dataset: DefectDataset, split: str, spec: SplitSpec | None, seed: int) -> list[Sample]:
    """The samples of ``split`` under ``spec``.

    ``train``/``val``: ``val_fraction`` of the dataset's training samples, drawn
    with the split seed, become ``val`` (added to any the format has itself).
    ``gen_train``/``gen_eval``: see :func:`generation_split`. With
    ``protocol: generation``, ``test`` leaves out the ``gen_train`` samples, so
    no image the generator learnt from is used to score a detector, and
    ``train`` leaves them out too.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    fraction = spec.val_fraction if spec is not None else 0.0
    split_seed = spec.seed if spec is not None and spec.seed is not None else seed
    generation = spec is not None and spec.protocol == "generation"
    if split in ("gen_train", "gen_eval"):
        gen_train, gen_eval = generation_split(dataset)
        return gen_train if split == "gen_train" else gen_eval
    held_by_generator = {s.id for s in generation_split(dataset)[0]} if generation else set()
    if split == "test":
        return [s for s in dataset.samples("test") if s.id not in held_by_generator]
    train = [s for s in dataset.samples("train") if s.id not in held_by_generator]
    if fraction == 0.0:
        return list(dataset.samples("val")) if split == "val" else train
    train.sort(key=lambda s: s.id)  # the draw must not depend on the order the reader listed files in
    order = list(range(len(train)))
    random.Random(split_seed).shuffle(order)
    n_val = round(len(train) * fraction)
    held = set(order[:n_val])
    if split == "val":
        return list(dataset.samples("val")) + [s for i, s in enumerate(train) if i in held]
    return [s for i, s in enumerate(train) if i not in held]
