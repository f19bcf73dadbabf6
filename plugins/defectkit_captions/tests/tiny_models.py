"""Tiny BLIP-2, LLaVA and open_clip models built from configs (random weights), saved like hub checkpoints.

Nothing is downloaded. The text side of BLIP-2 (OPT) and LLaVA (LLaMA) uses
a word-level ``tokenizers`` vocabulary trained on a few sentences, wrapped in
``PreTrainedTokenizerFast``; it is saved with the processor, so loading the
folder goes through exactly the ``from_pretrained`` path a hub id takes.
The language models are initialised with a large standard deviation so
greedy decoding picks real words instead of repeating one special token.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SIZE = 32
SENTENCES = [
    "USER ASSISTANT describe the crazing pitted surface scratches defect in this image of a steel surface",
    "fine cracks dark pits long thin lines on rolled steel with grooves and holes",
]
#: llava-1.5-hf's chat template, reduced to what a single user turn needs
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def word_tokenizer(with_image_token: bool):
    """A word-level fast tokenizer with <s>, </s>, <pad>, <unk> (and <image> for LLaVA) that prepends <s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"] + (["<image>"] if with_image_token else [])
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    # like the OPT and LLaMA tokenizers, start every text with <s>
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if with_image_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", **extra
    )


def _special_ids(tokenizer) -> dict[str, int]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save_tiny_blip2(folder: Path, num_query_tokens: int = 4) -> Path:
    """A BLIP-2 (tiny ViT, Q-Former, OPT) and its processor, saved to ``folder``."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    tokenizer = word_tokenizer(with_image_token=False)
    image_processor = BlipImageProcessor(size={"height": SIZE, "width": SIZE})
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens)
    vocab = len(tokenizer)  # the processor added <image>
    layer = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = Blip2Config(
        vision_config=Blip2VisionConfig(**layer, intermediate_size=64, image_size=SIZE, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(
            **layer, intermediate_size=64, encoder_hidden_size=32, vocab_size=vocab
        ).to_dict(),
        text_config=OPTConfig(
            **layer,
            ffn_dim=64,
            vocab_size=vocab,
            word_embed_proj_dim=32,
            max_position_embeddings=128,
            init_std=1.0,
            **_special_ids(tokenizer),
        ).to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        initializer_range=1.0,
    )
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_llava(folder: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """A LLaVA (tiny CLIP vision tower, LLaMA) and its processor, saved to ``folder``."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = word_tokenizer(with_image_token=True)
    image_processor = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=chat_template,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=SIZE,
            patch_size=8,
            projection_dim=32,
        ).to_dict(),
        text_config=LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=128,
            initializer_range=1.0,
            **_special_ids(tokenizer),
        ).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path, seed: int = 0, embed_dim: int = 16) -> Path:
    """An open_clip CLIP from a config dict, saved as a ``local-dir:`` model (config + safetensors)."""
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": SIZE},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder
