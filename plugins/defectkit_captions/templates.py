"""Caption templates: the provider's text combined with the class token or LoRA trigger. Light: no torch.

A template is a :meth:`str.format` string over named placeholders, checked when
a recipe is validated (an unknown placeholder is an error then, not a
``KeyError`` an hour into a run)::

    "{trigger}, {caption}"            ->  "<crazing>, fine cracks, network of cracks"
    "a photo of {trigger} {caption}"  ->  "a photo of <crazing> fine cracks, network of cracks"
    "{caption}, {keywords}, {class_keywords}, {trigger}"   (seed 000 §8.2: a model's caption mixed with
                                                            the paper and class keywords and the trigger)
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from defectkit.data.sample import Sample

#: what a caption template may use
CAPTION_FIELDS: dict[str, str] = {
    "caption": "the provider's text",
    "trigger": "the class token or LoRA trigger (`triggers`, else `default_trigger`)",
    "defect_type": "the defect class as the dataset names it (pitted_surface)",
    "defect_name": "the defect class in words (pitted surface)",
    "object_class": "the object or material category, empty where the dataset has none",
    "keywords": "the paper keywords of the surface-defect literature (`paper_keywords`), comma-separated",
    "class_keywords": "the keywords of the sample's defect type (`class_keywords`), comma-separated",
}

#: what a prompt variant (ranked by CLIP, seed 000 §2.4) may use: the final caption and everything above
VARIANT_FIELDS: dict[str, str] = {"prompt": "the final caption", **CAPTION_FIELDS}

#: what an instruction (LLaVA, vision APIs) or a CLIP scoring template may use
INSTRUCTION_FIELDS: dict[str, str] = {
    "defect_type": CAPTION_FIELDS["defect_type"],
    "defect_name": CAPTION_FIELDS["defect_name"],
    "object_class": CAPTION_FIELDS["object_class"],
}


def check_template(template: str, allowed: dict[str, str], required: tuple[str, ...] = ()) -> str:
    """Return ``template`` if it only uses ``allowed`` placeholders (and all of ``required``), else raise ``ValueError``."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:  # an unmatched brace
        raise ValueError(
            f"{template!r} is not a valid template ({error}); write literal braces as {{{{ and }}}}"
        ) from None
    unknown = sorted(name for name in used if name not in allowed)
    if unknown:
        choices = ", ".join("{" + name + "}" for name in allowed)
        raise ValueError(f"{template!r} uses unknown placeholder(s) {', '.join(unknown)}; choose from {choices}")
    missing = [name for name in required if name not in used]
    if missing:
        raise ValueError(f"{template!r} must contain {', '.join('{' + name + '}' for name in missing)}")
    return template


def defect_name(defect_type: str) -> str:
    """``pitted_surface`` -> ``pitted surface``: class names read as words in prompts."""
    return defect_type.replace("_", " ")


def sample_fields(sample: Sample) -> dict[str, str]:
    """The placeholders every template may use, for one sample."""
    return {
        "defect_type": sample.defect_type,
        "defect_name": defect_name(sample.defect_type),
        "object_class": sample.object_class,
    }


def tidy(text: str) -> str:
    """One line, single spaces, no empty list items.

    Placeholders may be empty (a dataset without object classes, a provider
    that returned nothing), which would leave ``"a  surface"`` or ``", ,"`` in
    a prompt; tokenizers treat those as real tokens, so they are removed.
    """
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"(,\s*)+,", ",", text)
    return text.strip(" ,")


def render(template: str, fields: dict[str, str]) -> str:
    """Fill ``template`` (already checked) with ``fields`` and tidy the result."""
    return tidy(template.format(**fields))
