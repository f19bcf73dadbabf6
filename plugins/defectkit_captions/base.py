"""What every caption provider shares: the ``caption`` step, templating and ``captions.jsonl``.

A provider subclasses :class:`CaptionProvider` and implements
:meth:`~CaptionProvider.caption_images`; the base turns the provider's text
into final captions with the recipe's template and trigger, writes them, and
resumes an interrupted step without captioning an image twice.

``captions.jsonl`` has one JSON object a line, in the split's sample order::

    {"id": "train/crazing/crazing_1.bmp", "defect_type": "crazing", "object_class": "steel",
     "caption": "<crazing>, fine cracks, network of cracks", "raw": "fine cracks, network of cracks",
     "provider": "keywords", "model": "keywords"}
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from defectkit.errors import DefectkitError
from defectkit.io import write_text
from defectkit_captions.config import CaptionOptions
from defectkit_captions.templates import defect_name, render, sample_fields, tidy

if TYPE_CHECKING:
    from PIL import Image

    from defectkit.data.sample import Sample
    from defectkit.run import StepContext

#: the artifact a caption step declares, and its file name in the step folder
CAPTIONS_ARTIFACT = "captions"
CAPTIONS_FILE = "captions.jsonl"
#: lines appended as chunks finish, so an interrupted step resumes where it stopped
PARTIAL_FILE = ".captions.partial.jsonl"


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_records(*paths: Path) -> dict[str, dict[str, Any]]:
    """Caption records by sample id from ``paths`` (later files win); unreadable lines are dropped.

    The partial file is appended line by line, so a crash can leave its last
    line cut short: that image is simply captioned again.
    """
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                records[record["id"]] = record
    return records


class CaptionProvider(ABC):
    """A caption provider: :meth:`caption_images` for Python callers, :meth:`caption` for a recipe's step.

    Attributes:
        config: the validated options.
        device: the torch device models run on; set from the run by :meth:`caption`,
            else CUDA when available (model providers only).
        stats: counters a provider adds to the step's metrics (API requests, cache hits).
    """

    #: the component name, recorded as ``provider`` in captions.jsonl
    name: ClassVar[str]

    def __init__(self, config: CaptionOptions) -> None:
        self.config = config
        self.device: Any = None
        self.stats: Counter[str] = Counter()
        self._variant_clip: Any = None  # the open_clip model ranking prompt_variants, loaded on first use

    # -- what a provider implements ----------------------------------------------------

    @property
    @abstractmethod
    def model_id(self) -> str:
        """The model behind the captions (a hub id, a folder, an API model), recorded as ``model``."""

    @abstractmethod
    def caption_images(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[str | None]:
        """The provider's text for each image (``samples[i]`` describes ``images[i]``).

        ``None`` marks an image the provider skipped (the ``openai`` provider
        with ``on_error: skip``); every other provider returns strings only.
        """

    @property
    def chunk_size(self) -> int:
        """Images per :meth:`caption_images` call in a step: a model's batch, an API's wave of requests."""
        return int(getattr(self.config, "batch_size", 32))

    # -- templating --------------------------------------------------------------------

    def trigger(self, sample: Sample) -> str:
        """The class token or LoRA trigger of ``sample``'s defect type."""
        found = self.config.triggers.get(sample.defect_type)
        if found is not None:
            return found
        return render(self.config.default_trigger, sample_fields(sample))

    def fields(self, raw: str, sample: Sample) -> dict[str, str]:
        """What the caption template may use, for ``sample`` with the provider's text ``raw``."""
        class_words = self.config.class_keywords.get(sample.defect_type) or [defect_name(sample.defect_type)]
        return {
            **sample_fields(sample),
            "caption": raw,
            "trigger": self.trigger(sample),
            "keywords": ", ".join(self.config.paper_keywords),
            "class_keywords": ", ".join(class_words),
        }

    def final_caption(self, raw: str, sample: Sample) -> str:
        """``raw`` (the provider's text) put into the recipe's template."""
        return render(self.config.template, self.fields(raw, sample))

    def record(self, raw: str, sample: Sample, image: Image.Image | None = None) -> dict[str, Any]:
        """One line of captions.jsonl; with ``prompt_variants``, the variant CLIP finds closest to ``image``."""
        raw = tidy(raw)
        caption = self.final_caption(raw, sample)
        record = {
            "id": sample.id,
            "defect_type": sample.defect_type,
            "object_class": sample.object_class,
            "caption": caption,
            "raw": raw,
            "provider": self.name,
            "model": self.model_id,
        }
        if self.config.prompt_variants:
            fields = {**self.fields(raw, sample), "prompt": caption}
            candidates = list(dict.fromkeys([caption, *(render(v, fields) for v in self.config.prompt_variants)]))
            scores = self._rank_variants(image if image is not None else sample.load_image(), candidates)
            record["caption"] = max(scores, key=scores.get)
            record["variant_scores"] = {text: round(score, 5) for text, score in scores.items()}
        return record

    def _rank_variants(self, image: Image.Image, candidates: list[str]) -> dict[str, float]:
        """CLIP image-text cosine similarity of each candidate prompt (seed 000 §2.4's ``optimize_prompt``)."""
        import torch

        from defectkit_captions.clip_rerank import load_clip

        if self._variant_clip is None:
            device = torch.device(self.device or "cpu")
            self._variant_clip = load_clip(self.config.variant_model, device, who=f"{self.name} prompt_variants")
        clip = self._variant_clip
        device = next(clip.model.parameters()).device
        image_features = clip.image_features([image], device)  # (1, D)
        text_features = clip.text_features([[text] for text in candidates], device)  # (C, D)
        return dict(zip(candidates, (image_features @ text_features.T)[0].tolist(), strict=True))

    def caption_samples(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """captions.jsonl records for ``samples`` without a run (skipped images are left out)."""
        records = []
        for chunk in chunks(samples, self.chunk_size):
            images = [sample.load_image() for sample in chunk]
            raws = self.caption_images(images, chunk)
            records += [
                self.record(raw, sample, image)
                for sample, raw, image in zip(chunk, raws, images, strict=True)
                if raw is not None
            ]
        return records

    # -- the caption step ----------------------------------------------------------------

    def caption(self, ctx: StepContext) -> None:
        """Caption ``ctx.samples(split)`` into ``captions.jsonl`` (artifact ``captions``).

        Under ``accelerate launch`` only the main process captions (one file,
        one set of API requests); the others declare the same artifact so their
        later steps find it, and the engine waits for the main process.
        """
        path, partial = ctx.step_dir / CAPTIONS_FILE, ctx.step_dir / PARTIAL_FILE
        if not ctx.is_main_process:
            ctx.add_artifact(CAPTIONS_ARTIFACT, path)
            return
        self.device = ctx.device
        samples = ctx.samples(self.config.split)[: self.config.max_images]
        if not samples:
            raise DefectkitError(
                f"step {ctx.step_id}: split {self.config.split!r} has no samples to caption; "
                "set `split:` to one the dataset has (train, val, test)"
            )
        wanted = {sample.id for sample in samples}
        done = {key: rec for key, rec in read_records(path, partial).items() if key in wanted} if ctx.resume else {}
        # restart the partial file from complete lines only: a line cut short would swallow the next one appended
        write_text(partial, "".join(map(jsonl_line, done.values())))
        todo = [sample for sample in samples if sample.id not in done]
        reused, skipped = len(done), 0
        started = time.perf_counter()
        with open(partial, "a", encoding="utf-8") as handle:
            batches = chunks(todo, self.chunk_size)
            for chunk in ctx.progress(batches, total=len(todo), description=f"caption ({self.name})", unit="images", size=len):
                images = [sample.load_image() for sample in chunk]
                raws = self.caption_images(images, chunk)
                for sample, raw, image in zip(chunk, raws, images, strict=True):
                    if raw is None:
                        skipped += 1
                        continue
                    done[sample.id] = self.record(raw, sample, image)
                    handle.write(jsonl_line(done[sample.id]))
                handle.flush()
        seconds = time.perf_counter() - started
        records = [done[sample.id] for sample in samples if sample.id in done]
        write_text(path, "".join(map(jsonl_line, records)))
        partial.unlink()
        ctx.add_artifact(CAPTIONS_ARTIFACT, path)
        for rec in records[:3]:
            ctx.logger.info("caption %s: %s", rec["id"], rec["caption"])
        metrics: dict[str, Any] = {
            "captions": len(records),
            "reused": reused,
            "skipped": skipped,
            "mean_words": round(sum(len(rec["caption"].split()) for rec in records) / max(len(records), 1), 2),
        }
        if todo and seconds > 0:
            metrics["images_per_second"] = round((len(todo) - skipped) / seconds, 3)
        ctx.log_metrics({**metrics, **self.stats})
