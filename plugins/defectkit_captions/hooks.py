"""Hook implementations of the captions plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from defectkit import Component, hookimpl


@hookimpl
def defectkit_caption_providers() -> list[Component]:
    return [
        Component(
            kind="caption_provider",
            name="keywords",
            produces=("captions",),
            factory="defectkit_captions.keywords:KeywordCaptioner",
            config="defectkit_captions.config:KeywordsConfig",
            summary="the most frequent paper and per-class keywords (no model, deterministic)",
        ),
        Component(
            kind="caption_provider",
            name="clip_rerank",
            produces=("captions",),
            factory="defectkit_captions.clip_rerank:ClipRerankCaptioner",
            config="defectkit_captions.config:ClipRerankConfig",
            summary="candidate keywords ranked per image by open_clip models (ViT-L-14-336 ...; an ensemble averages)",
            extra="captions",
        ),
        Component(
            kind="caption_provider",
            name="blip2",
            produces=("captions",),
            factory="defectkit_captions.blip2:Blip2Captioner",
            config="defectkit_captions.config:Blip2CaptionConfig",
            summary="BLIP-2 image captions (transformers; Salesforce/blip2-opt-2.7b)",
            extra="captions",
        ),
        Component(
            kind="caption_provider",
            name="llava",
            produces=("captions",),
            factory="defectkit_captions.llava:LlavaCaptioner",
            config="defectkit_captions.config:LlavaCaptionConfig",
            summary="LLaVA descriptions following an instruction per defect class (transformers; llava-1.5-7b-hf)",
            extra="captions",
        ),
        Component(
            kind="caption_provider",
            name="openai",
            produces=("captions",),
            factory="defectkit_captions.openai_api:OpenAICaptioner",
            config="defectkit_captions.config:OpenAICaptionConfig",
            summary="any OpenAI-compatible vision API (GPT-4o, vLLM, Ollama): retries, concurrency, answer cache",
            extra="openai",
        ),
    ]
