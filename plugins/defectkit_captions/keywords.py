"""``keywords``: class and paper keywords ranked by how often a corpus mentions them (the seed's method).

No model and no randomness: the same class gets the same caption unless the
sample carries its own caption text (a dataset with descriptions), whose
mentions count too. Ties keep the order of the keyword lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from defectkit_captions.base import CaptionProvider
from defectkit_captions.config import KeywordLists, KeywordsConfig
from defectkit_captions.templates import defect_name

if TYPE_CHECKING:
    from PIL import Image

    from defectkit.data.sample import Sample


def count_mentions(keyword: str, texts: Sequence[str]) -> int:
    """Whole-word, case-insensitive occurrences of ``keyword`` in ``texts`` ("pits" does not count "pitstop")."""
    pattern = re.compile(r"(?<!\w)" + re.escape(keyword.lower()) + r"(?!\w)")
    return sum(len(pattern.findall(text.lower())) for text in texts)


def class_candidates(lists: KeywordLists, defect_type: str) -> list[str]:
    """The keywords of ``defect_type``; a class without a list is described by its own name."""
    return list(lists.class_keywords.get(defect_type) or [defect_name(defect_type)])


def rank_by_frequency(keywords: Sequence[str], counts: dict[str, int]) -> list[str]:
    """``keywords`` without repeats, most frequent first; ties keep their list order (sorted() is stable)."""
    unique = list(dict.fromkeys(keywords))
    return sorted(unique, key=lambda keyword: -counts.get(keyword, 0))


class KeywordCaptioner(CaptionProvider):
    """Captions made of the ``class_top_k`` most frequent class keywords and ``paper_top_k`` paper keywords."""

    name = "keywords"
    config: KeywordsConfig

    @property
    def model_id(self) -> str:
        return "keywords"

    @cached_property
    def corpus_counts(self) -> dict[str, int]:
        """Mentions of every configured keyword in the corpus, counted once."""
        words = {*self.config.paper_keywords, *(w for ws in self.config.class_keywords.values() for w in ws)}
        return {word: count_mentions(word, self.config.corpus) for word in words}

    def keywords_for(self, sample: Sample) -> list[str]:
        """The ranked keywords of one sample: its class's first, then the paper keywords."""
        class_words = class_candidates(self.config, sample.defect_type)
        own_text = [sample.caption] if self.config.use_sample_captions and sample.caption else []
        counts = {
            word: self.corpus_counts.get(word, 0) + count_mentions(word, own_text)
            for word in [*class_words, *self.config.paper_keywords]
        }
        ranked_class = rank_by_frequency(class_words, counts)[: self.config.class_top_k]
        ranked_paper = [w for w in rank_by_frequency(self.config.paper_keywords, counts) if w not in ranked_class]
        return ranked_class + ranked_paper[: self.config.paper_top_k]

    def caption_images(self, images: Sequence[Image.Image], samples: Sequence[Sample]) -> list[str | None]:
        """Keyword captions for ``samples``; the images are not looked at."""
        return [", ".join(self.keywords_for(sample)) for sample in samples]
