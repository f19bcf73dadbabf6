"""Options of the caption providers (a recipe's ``with:`` block). Light: no torch, no openai.

Every provider shares :class:`CaptionOptions` (which samples, the template, the
triggers); model providers add the model id and batching, instruction
providers (LLaVA, vision APIs) an instruction per defect class.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from defectkit.options import StrictOptions
from defectkit_captions.templates import CAPTION_FIELDS, INSTRUCTION_FIELDS, VARIANT_FIELDS, check_template
from defectkit_captions.vocabulary import CLASS_KEYWORDS, CORPUS, PAPER_KEYWORDS

Dtype = Literal["auto", "float32", "float16", "bfloat16"]

DEFAULT_INSTRUCTION = (
    "Describe the {defect_name} defect in this grayscale image of a {object_class} surface as a prompt for a "
    "text-to-image model: comma-separated visual keywords about its texture, shape, size and shading. "
    "No full sentences, at most 20 words."
)


def _check_instruction(template: str) -> str:
    return check_template(template, INSTRUCTION_FIELDS)


class KeywordLists(BaseModel):
    """The candidate vocabulary of the keyword-based providers."""

    paper_keywords: list[str] = Field(
        default_factory=lambda: list(PAPER_KEYWORDS),
        description="generic keywords of the surface-defect literature, used for every class",
    )
    class_keywords: dict[str, list[str]] = Field(
        default_factory=lambda: {name: list(words) for name, words in CLASS_KEYWORDS.items()},
        description="keywords per defect type (defaults: NEU-DET's six classes and 'good'); "
        "a defect type not listed uses its own name",
    )


class ClipModel(StrictOptions):
    """One open_clip model (of the ``clip_rerank`` ensemble, or ranking prompt variants)."""

    name: str = Field(
        "ViT-L-14-336",
        min_length=1,
        description="open_clip model name (ViT-L-14, ViT-L-14-336, ViT-H-14 ...), 'hf-hub:org/repo' or 'local-dir:/path'",
    )
    pretrained: str | None = Field(
        "openai",
        description="open_clip pretrained tag (openai, laion2b_s32b_b79k ...) or a checkpoint file; "
        "ignored for hf-hub:/local-dir: names",
    )


class CaptionOptions(KeywordLists):
    """What every provider shares: which samples, and how the provider's text becomes the final caption."""

    # a misspelt option is an error naming the key, never silently ignored
    model_config = ConfigDict(extra="forbid")

    split: Literal["train", "val", "test", "gen_train", "gen_eval"] = Field(
        "train",
        description="which samples to caption: train, val, test, or gen_train / gen_eval (the generation protocol)",
    )
    template: str = Field(
        "{trigger}, {caption}",
        description=(
            "the final caption; placeholders {caption} (the provider's text), {trigger}, {defect_type}, "
            "{defect_name}, {object_class}, {keywords} (paper_keywords) and {class_keywords}, e.g. "
            "'a photo of {trigger} {caption}' or seed 000's mix '{caption}, {keywords}, {class_keywords}, {trigger}'"
        ),
    )
    triggers: dict[str, str] = Field(
        default_factory=dict,
        description="class token or LoRA trigger per defect type, e.g. {crazing: '<crazing>'}; others use default_trigger",
    )
    default_trigger: str = Field(
        "<{defect_type}>",
        description="trigger for defect types not in `triggers`; placeholders {defect_type}, {defect_name}, {object_class}",
    )
    max_images: int | None = Field(
        None, ge=1, description="caption only the first max_images samples of the split (null: all of them)"
    )
    prompt_variants: list[str] = Field(
        default_factory=list,
        description="variants of the final caption ({prompt}), e.g. '{prompt}, high detail, macro photography'; "
        "CLIP keeps the one (or the caption itself) most similar to each image (seed 000 §2.4); empty: off",
    )
    variant_model: ClipModel = Field(
        default_factory=ClipModel, description="the open_clip model that ranks prompt_variants"
    )

    @field_validator("prompt_variants")
    @classmethod
    def _variants(cls, value: list[str]) -> list[str]:
        return [check_template(template, VARIANT_FIELDS, required=("prompt",)) for template in value]

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, CAPTION_FIELDS)

    @field_validator("default_trigger")
    @classmethod
    def _default_trigger(cls, value: str) -> str:
        return _check_instruction(value)


class KeywordsConfig(CaptionOptions, KeywordLists):
    """``keywords``: the most frequent class and paper keywords, no model (deterministic)."""

    corpus: list[str] = Field(
        default_factory=lambda: list(CORPUS),
        description="texts in which keyword occurrences are counted to rank them (defaults: NEU-DET class descriptions)",
    )
    use_sample_captions: bool = Field(
        True, description="also count occurrences in a sample's own caption, where the dataset has one"
    )
    class_top_k: int = Field(3, ge=0, description="how many class keywords a caption keeps, most frequent first")
    paper_top_k: int = Field(2, ge=0, description="how many paper keywords a caption keeps, most frequent first")


class ClipRerankConfig(CaptionOptions, KeywordLists):
    """``clip_rerank``: each image's candidate keywords ranked by open_clip image-text similarity."""

    models: list[ClipModel] = Field(
        default_factory=lambda: [ClipModel()],
        min_length=1,
        description="open_clip models; with several, the per-model softmax scores are averaged (an ensemble), "
        "e.g. [{name: ViT-L-14-336, pretrained: openai}, {name: ViT-H-14, pretrained: laion2b_s32b_b79k}]",
    )
    scoring_templates: list[str] = Field(
        default_factory=lambda: [
            "a photo of {keyword}.",
            "a grayscale close-up photo of a {object_class} surface with {keyword}.",
            "an industrial inspection image of a {defect_name} defect: {keyword}.",
        ],
        min_length=1,
        description="texts CLIP scores per candidate keyword, averaged (prompt ensembling); must contain {keyword}, "
        "may use {defect_type}, {defect_name}, {object_class}",
    )
    use_paper_keywords: bool = Field(True, description="rank the paper keywords together with the class keywords")
    top_k: int = Field(4, ge=1, description="how many best-scoring keywords a caption keeps, best first")
    batch_size: int = Field(32, ge=1, description="images per forward pass")
    dtype: Dtype = Field("auto", description="model precision; auto: float16 on CUDA, float32 on the CPU")

    @field_validator("scoring_templates")
    @classmethod
    def _scoring_templates(cls, value: list[str]) -> list[str]:
        allowed = {"keyword": "the candidate keyword", **INSTRUCTION_FIELDS}
        return [check_template(template, allowed, required=("keyword",)) for template in value]


class GenerationOptions(BaseModel):
    """Batching, precision and decoding of the transformers providers."""

    batch_size: int = Field(8, ge=1, description="images per generate() call")
    dtype: Dtype = Field("auto", description="model precision; auto: float16 on CUDA, float32 on the CPU")
    max_new_tokens: int = Field(60, ge=1, le=1024, description="the longest caption in tokens")
    num_beams: int = Field(1, ge=1, description="beam search width (1: greedy decoding)")


class Blip2CaptionConfig(CaptionOptions, GenerationOptions):
    """``blip2``: BLIP-2 image captioning with transformers."""

    model: str = Field(
        "Salesforce/blip2-opt-2.7b",
        min_length=1,
        description="Hugging Face Hub id or local folder (Salesforce/blip2-opt-6.7b, Salesforce/blip2-flan-t5-xl ...)",
    )
    prompt: str = Field(
        "",
        description="text the caption continues, e.g. 'a photo of a steel surface with' or "
        "'Question: which defect is visible? Answer:'; empty: plain captioning. "
        "Placeholders {defect_type}, {defect_name}, {object_class}",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _check_instruction(value)


class InstructionOptions(BaseModel):
    """The instruction a vision-language model follows, per defect class."""

    instruction: str = Field(
        DEFAULT_INSTRUCTION,
        description="the instruction sent with each image; placeholders {defect_type}, {defect_name}, {object_class}",
    )
    instructions: dict[str, str] = Field(
        default_factory=dict,
        description="an instruction per defect type, replacing `instruction` for that class",
    )

    @field_validator("instruction")
    @classmethod
    def _instruction(cls, value: str) -> str:
        return _check_instruction(value)

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _check_instruction(text) for name, text in value.items()}

    def instruction_for(self, defect_type: str) -> str:
        """The (unfilled) instruction template of ``defect_type``."""
        return self.instructions.get(defect_type, self.instruction)


class LlavaCaptionConfig(CaptionOptions, GenerationOptions, InstructionOptions):
    """``llava``: LLaVA following an instruction per defect class, with transformers."""

    model: str = Field(
        "llava-hf/llava-1.5-7b-hf",
        min_length=1,
        description="Hugging Face Hub id or local folder of a LlavaForConditionalGeneration model (llava-hf/...)",
    )
    batch_size: int = Field(4, ge=1, description="images per generate() call")
    prompt_format: str | None = Field(
        None,
        description="only for processors without a chat template: the prompt around the instruction, with "
        "{image} (the image token) and {instruction}, e.g. 'USER: {image}\\n{instruction} ASSISTANT:'; "
        "null: the processor's chat template",
    )

    @field_validator("prompt_format")
    @classmethod
    def _prompt_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        allowed = {"image": "the processor's image token", "instruction": "the filled instruction"}
        return check_template(value, allowed, required=("image", "instruction"))


class OpenAICaptionConfig(CaptionOptions, InstructionOptions):
    """``openai``: any OpenAI-compatible vision API (OpenAI, a local vLLM or Ollama server)."""

    model: str = Field(
        "gpt-4o", min_length=1, description="the model name the server knows (gpt-4o, gpt-4.1, llava ...)"
    )
    base_url: str | None = Field(
        None,
        description="API base URL; null: OpenAI. A local vLLM: http://localhost:8000/v1, Ollama: http://localhost:11434/v1",
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable holding the API key (the key itself never goes in a recipe)",
    )
    max_tokens: int = Field(150, ge=1, description="the longest answer in tokens")
    token_limit_param: Literal["max_completion_tokens", "max_tokens"] = Field(
        "max_completion_tokens",
        description="how the limit is sent: OpenAI's current max_completion_tokens, or max_tokens for older servers",
    )
    temperature: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="sampling temperature; null: the server's default (some models accept no other)",
    )
    detail: Literal["low", "high", "auto"] | None = Field(
        None, description="the image_url detail level (OpenAI: low is cheaper); null: not sent"
    )
    image_format: Literal["png", "jpeg"] = Field("png", description="how images are encoded in the data URL")
    max_side: int | None = Field(
        1024, ge=16, description="images are shrunk to at most max_side pixels on their longer side before sending"
    )
    timeout: float = Field(60.0, gt=0.0, description="seconds to wait for one answer before retrying")
    max_retries: int = Field(
        5, ge=0, description="retries with exponential back-off on 429, 5xx, time-outs and connection errors"
    )
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once")
    cache: bool = Field(True, description="reuse answers stored under cache_dir, so a re-run never pays twice")
    cache_dir: str | None = Field(
        None,
        description="the answer cache; null: $XDG_CACHE_HOME/defectkit/captions (~/.cache/defectkit/captions)",
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="a malformed answer, or a request still failing after the retries: raise stops the step; "
        "skip leaves the image out of captions.jsonl, counts it and logs a warning",
    )
