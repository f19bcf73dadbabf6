"""``clip_rerank``: each image's candidate keywords ranked by open_clip image-text similarity.

Candidates are the sample's class keywords (plus the paper keywords). Each
candidate is scored through several scoring templates whose text embeddings
are averaged (CLIP's prompt ensembling); each model turns its similarities
into a softmax over the candidates, and an ensemble averages those
probabilities, so models with different logit scales weigh the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from defectkit.devices import resolve_device
from defectkit.errors import DefectkitError
from defectkit_captions.base import CaptionProvider
from defectkit_captions.config import ClipModel, ClipRerankConfig
from defectkit_captions.keywords import class_candidates
from defectkit_captions.templates import render, sample_fields

if TYPE_CHECKING:
    from PIL import Image

    from defectkit.data.sample import Sample

#: open_clip's names for the precisions of the `dtype` option
_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass
class LoadedClip:
    """One open_clip model ready to score: the network, its image transform and tokenizer."""

    spec: ClipModel
    model: Any
    preprocess: Any
    tokenizer: Any
    dtype: torch.dtype

    @torch.inference_mode()
    def image_features(self, images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
        """L2-normalised image embeddings, (N, D) in float32."""
        pixels = torch.stack([self.preprocess(image) for image in images]).to(device, self.dtype)
        features = self.model.encode_image(pixels).float()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def text_features(self, texts: list[list[str]], device: torch.device) -> torch.Tensor:
        """One L2-normalised embedding per candidate, the mean over that candidate's template texts: (C, D)."""
        flat = [text for group in texts for text in group]
        features = self.model.encode_text(self.tokenizer(flat).to(device)).float()
        features = features / features.norm(dim=-1, keepdim=True)
        features = features.view(len(texts), len(texts[0]), -1).mean(dim=1)
        return features / features.norm(dim=-1, keepdim=True)


def load_clip(spec: ClipModel, device: torch.device, dtype: str = "auto", who: str = "clip_rerank") -> LoadedClip:
    """An open_clip model ready to score; a model that cannot be loaded is one line naming it."""
    import open_clip

    if dtype == "auto":
        dtype = "float16" if device.type == "cuda" else "float32"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.name, pretrained=spec.pretrained, device=device, precision=_PRECISION[dtype]
        )
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        raise DefectkitError(
            f"{who}: cannot load open_clip model {spec.name!r} (pretrained {spec.pretrained!r}): "
            f'{str(error).splitlines()[0]}; `python -c "import open_clip; print(open_clip.list_pretrained())"` '
            "lists the known pairs"
        ) from None
    return LoadedClip(spec, model.eval(), preprocess, open_clip.get_tokenizer(spec.name), getattr(torch, dtype))


class ClipRerankCaptioner(CaptionProvider):
    """Captions of the ``top_k`` candidate keywords CLIP finds most similar to each image."""

    name = "clip_rerank"
    config: ClipRerankConfig

    def __init__(self, config: ClipRerankConfig) -> None:
        super().__init__(config)
        # candidate text embeddings per (model, defect type, object class): computed once, reused for every image
        self._text_cache: dict[tuple[int, str, str], torch.Tensor] = {}

    @property
    def model_id(self) -> str:
        return "+".join(
            f"{spec.name}/{spec.pretrained}" if spec.pretrained else spec.name for spec in self.config.models
        )

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @cached_property
    def models(self) -> list[LoadedClip]:
        """The ensemble, loaded on first use."""
        return [load_clip(spec, self.torch_device, self.config.dtype, self.name) for spec in self.config.models]

    def candidates(self, sample: Sample) -> list[str]:
        """The keywords ranked for ``sample``: its class's, then the paper keywords, without repeats."""
        words = class_candidates(self.config, sample.defect_type)
        if self.config.use_paper_keywords:
            words += self.config.paper_keywords
        return list(dict.fromkeys(words))

    def _candidate_features(self, index: int, clip: LoadedClip, sample: Sample) -> torch.Tensor:
        key = (index, sample.defect_type, sample.object_class)
        if key not in self._text_cache:
            fields = sample_fields(sample)
            texts = [
                [render(template, {**fields, "keyword": word}) for template in self.config.scoring_templates]
                for word in self.candidates(sample)
            ]
            self._text_cache[key] = clip.text_features(texts, self.torch_device)
        return self._text_cache[key]

    @torch.inference_mode()
    def scores(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[dict[str, float]]:
        """Per image, each candidate keyword's probability averaged over the ensemble."""
        totals = [torch.zeros(len(self.candidates(sample))) for sample in samples]
        for index, clip in enumerate(self.models):
            image_features = clip.image_features(images, self.torch_device)
            scale = float(clip.model.logit_scale.exp())
            for row, sample in enumerate(samples):
                text_features = self._candidate_features(index, clip, sample)
                logits = scale * image_features[row] @ text_features.T
                totals[row] += logits.softmax(dim=-1).cpu()
        return [
            {word: float(p) / len(self.models) for word, p in zip(self.candidates(s), total, strict=True)}
            for s, total in zip(samples, totals, strict=True)
        ]

    def caption_images(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[str | None]:
        """The ``top_k`` best-scoring keywords per image, best first, joined with commas."""
        captions: list[str | None] = []
        for ranked in self.scores(images, samples):
            best = sorted(ranked, key=ranked.__getitem__, reverse=True)[: self.config.top_k]
            captions.append(", ".join(best))
        return captions
