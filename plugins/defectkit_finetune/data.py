"""Training images, prompts and augmentation, drawn in an order that a resumed run repeats exactly.

Every random draw of a step (which images, their augmentation, MixUp partners)
comes from a seed computed from (seed, micro-step, process), never from a
global random state: a run resumed at step k draws exactly what the
uninterrupted run drew at step k.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from defectkit.errors import DataError
from defectkit_finetune.config import AugmentConfig, FinetuneConfig


@dataclass
class Record:
    id: str
    defect: str
    object_class: str
    prompt: str
    image: torch.Tensor  # uint8 [3, R, R]
    mask: torch.Tensor  # bool [1, R, R]
    original_size: tuple[int, int]  # (height, width) before resizing: SDXL's size conditioning
    crop_top_left: tuple[int, int]


def class_name(defect: str) -> str:
    """A defect type as words for a prompt (``rolled_in_scale`` -> ``rolled in scale``)."""
    return defect.replace("_", " ")


def select_samples(samples, config: FinetuneConfig, where: str):
    """The samples of the configured classes; an empty selection names what there was."""
    present = sorted({s.defect_type for s in samples})
    wanted = config.classes
    if wanted:
        missing = [c for c in wanted if c not in present]
        if missing:
            raise DataError(
                f"{where}: classes {missing} have no images in split {config.split!r}; it has {present or 'none'}"
            )
        chosen = [s for s in samples if s.defect_type in wanted]
    else:
        chosen = [s for s in samples if s.label == 1 or config.include_normal]
    if not chosen:
        raise DataError(
            f"{where}: split {config.split!r} has no defect images to train on (defect types: {present or 'none'}); "
            "set classes:, include_normal: true or another split:"
        )
    return chosen


def read_captions(path: Path | None) -> dict[str, str]:
    """``captions.jsonl`` of a caption step: sample id -> caption."""
    if path is None:
        return {}
    file = path / "captions.jsonl" if path.is_dir() else path
    captions = {}
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                captions[row["id"]] = row["caption"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise DataError(f"{file}:{number}: not a captions line with id and caption ({exc})") from None
    return captions


def make_prompt(sample, config: FinetuneConfig, tokens: dict[str, str], captions: dict[str, str]) -> str:
    token = tokens.get(sample.defect_type, class_name(sample.defect_type))
    caption = captions.get(sample.id)
    if caption:
        # a textual-inversion token must be in the prompt, or its embedding never trains
        return caption if sample.defect_type not in tokens or token in caption else f"{token}, {caption}"
    return config.prompt_template.format(
        token=token, defect=class_name(sample.defect_type), object_class=sample.object_class or "industrial"
    )


def load_records(samples, config: FinetuneConfig, tokens: dict[str, str], captions: dict[str, str]) -> list[Record]:
    """Read, resize (shorter side) and centre-crop every image and its mask once, as uint8."""
    import torchvision.transforms.v2.functional as TF

    size = config.resolution
    records = []
    for sample in samples:
        image = sample.load_image()
        width, height = image.size
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        mask = sample.load_mask()
        mask = torch.zeros(1, height, width, dtype=torch.bool) if mask is None else torch.from_numpy(mask)[None]
        if mask.shape[-2:] != (height, width):
            raise DataError(f"{sample.id}: mask is {tuple(mask.shape[-2:])}, its image {(height, width)}")
        scale = size / min(height, width)
        new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
        pixels = TF.resize(pixels, [new_h, new_w], antialias=True)
        mask = TF.resize(mask.to(torch.uint8), [new_h, new_w], interpolation=TF.InterpolationMode.NEAREST).bool()
        top, left = (new_h - size) // 2, (new_w - size) // 2
        records.append(
            Record(
                id=sample.id,
                defect=sample.defect_type,
                object_class=sample.object_class,
                prompt=make_prompt(sample, config, tokens, captions),
                image=pixels[:, top : top + size, left : left + size].contiguous(),
                mask=mask[:, top : top + size, left : left + size].contiguous(),
                original_size=(height, width),
                crop_top_left=(top, left),
            )
        )
    return records


def build_augment(config: AugmentConfig, size: int):
    """torchvision v2 pipeline; tv_tensors.Mask makes the mask follow every geometric move."""
    from torchvision.transforms import v2

    steps = []
    if config.hflip:
        steps.append(v2.RandomHorizontalFlip(config.hflip))
    if config.vflip:
        steps.append(v2.RandomVerticalFlip(config.vflip))
    if config.rotate or config.translate:
        # pad by reflection first, so rotated and shifted textures never show black corners
        pad = math.ceil(size * (config.translate + math.sin(math.radians(config.rotate))))
        steps += [
            v2.Pad(pad, padding_mode="reflect"),
            v2.RandomAffine(degrees=config.rotate, translate=(config.translate, config.translate)),
            v2.CenterCrop(size),
        ]
    if config.brightness or config.contrast:
        steps.append(v2.ColorJitter(brightness=config.brightness, contrast=config.contrast))
    return v2.Compose(steps) if steps else None


class BatchSource:
    """Deterministic batches: epoch permutations over the records, augmentation seeded per draw."""

    def __init__(self, records: list[Record], config: FinetuneConfig, process: int, processes: int) -> None:
        self.records = records
        self.config = config
        self.process = process
        self.processes = processes
        self.augment = build_augment(config.augment, config.resolution)

    @lru_cache(maxsize=4)  # noqa: B019 - one source per training run, a handful of epochs alive
    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.records), generator=generator)

    def indices(self, micro_step: int) -> list[int]:
        """Record indices of this process's share of global micro-batch ``micro_step``."""
        batch, count = self.config.batch_size, len(self.records)
        first = (micro_step * self.processes + self.process) * batch
        return [int(self._permutation(q // count)[q % count]) for q in range(first, first + batch)]

    def batch(self, micro_step: int) -> dict:
        """Pixels in [-1, 1], masks in [0, 1], prompts, and SDXL's size conditioning."""
        chosen = [self.records[i] for i in self.indices(micro_step)]
        seed = (self.config.seed * 7_919 + micro_step) * 131 + self.process
        # torchvision draws from the global generator: fork it, seeded for this micro-batch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            images, masks = self._transform(chosen)
            images, masks = self._mix(chosen, images, masks)
        return {
            "ids": [r.id for r in chosen],
            "pixels": images * 2.0 - 1.0,
            "masks": masks,
            "prompts": [r.prompt for r in chosen],
            "time_ids": torch.tensor(
                [[*r.original_size, *r.crop_top_left, self.config.resolution, self.config.resolution] for r in chosen],
                dtype=torch.float32,
            ),
        }

    def _transform(self, chosen: list[Record]) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        images, masks = [], []
        for record in chosen:
            image, mask = tv_tensors.Image(record.image), tv_tensors.Mask(record.mask)
            if self.augment is not None:
                image, mask = self.augment(image, mask)
            images.append(image.as_subclass(torch.Tensor).float() / 255.0)
            masks.append(mask.as_subclass(torch.Tensor).float())
        return torch.stack(images), torch.stack(masks)

    def _mix(self, chosen, images, masks):
        """MixUp / CutMix with another image of the same class in the batch: the prompt stays right."""
        options = self.config.augment
        if not (options.mixup or options.cutmix):
            return images, masks
        # partners are read from the batch as drawn, not as already mixed: an image must not get back its own
        # pixels through a partner mixed before it
        originals, original_masks = images, masks
        images, masks = images.clone(), masks.clone()
        size = images.shape[-1]
        for i, record in enumerate(chosen):
            partners = [j for j, other in enumerate(chosen) if j != i and other.defect == record.defect]
            if not partners:
                continue
            j = partners[int(torch.randint(len(partners), ()))]
            if options.cutmix and float(torch.rand(())) < options.cutmix:
                lam = float(torch.rand(()))
                cut = int(size * math.sqrt(1.0 - lam))
                top, left = (int(torch.randint(size - cut + 1, ())) for _ in range(2))
                window = (slice(None), slice(top, top + cut), slice(left, left + cut))
                images[i][window] = originals[j][window]
                masks[i][window] = original_masks[j][window]
            elif options.mixup:
                lam = float(torch.distributions.Beta(options.mixup, options.mixup).sample())
                images[i] = lam * originals[i] + (1.0 - lam) * originals[j]
                masks[i] = torch.maximum(original_masks[i] * lam, original_masks[j] * (1.0 - lam))
        return images, masks
