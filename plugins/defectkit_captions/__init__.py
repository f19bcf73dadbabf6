"""Caption providers for defectkit: keywords, CLIP re-ranking, BLIP-2, LLaVA and OpenAI-compatible vision APIs.

Components (registered in :mod:`defectkit_captions.hooks`, kind ``caption_provider``):
``keywords``, ``clip_rerank``, ``blip2``, ``llava`` and ``openai``. A ``caption``
step writes ``captions.jsonl`` (artifact ``captions``) for the train and
generate steps; each provider also has a plain Python API,
``provider.caption_images(images, samples)``. See ``docs/captions.md``.
"""
