"""Tiny Stable Diffusion pipelines built from configs, public and not test-only: recipes, benchmarks and other plugins build tiny models with them.

Each builder writes a complete diffusers folder with ``save_pretrained`` (random
weights, a few hundred kB) that loads back through the same
``from_pretrained`` path a hub id takes, so code under test never knows it is
tiny. Nothing here reaches the network:

* the CLIP tokenizer is a real CLIP BPE tokenizer, built from the first
  ``merges`` merges of the vocabulary open_clip ships
  (``bpe_simple_vocab_16e6.txt.gz``), so prompts tokenize like CLIP's (a word
  splits into more pieces, that is all);
* the T5 tokenizer (SD3) is a small unigram vocabulary of letters.

The VAEs have two blocks (an image is 2x its latent), the UNets two levels;
images of 32 or 64 px run in well under a second per step on a CPU.

Example::

    from defectkit_diffusion.tiny import build_tiny_pipeline, build_tiny_controlnet

    folder = build_tiny_pipeline("sdxl", tmp_path / "sdxl")          # or sd15, sd3; inpainting=True
    cn = build_tiny_controlnet("sdxl", tmp_path / "cn", folder)      # matches that pipeline
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

#: families the builders know
FAMILIES = ("sd15", "sdxl", "sd3")

_CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's (and GPT-2's) reversible byte -> printable character table; copied
    # because the vocabulary must be built exactly the way CLIP built it.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_clip_tokenizer(merges: int = 2000, model_max_length: int = 77):
    """A real CLIP BPE tokenizer over the first ``merges`` merges of open_clip's vocabulary."""
    import open_clip
    from transformers import CLIPTokenizer

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1 : merges + 1]
    merge_pairs = [tuple(line.split()) for line in lines]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in merge_pairs] + list(_CLIP_SPECIALS)
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(
        vocab=vocab,
        merges=merge_pairs,
        model_max_length=model_max_length,
    )


def tiny_t5_tokenizer(model_max_length: int = 77):
    """A small unigram T5 tokenizer: letters and digits, with and without the word marker."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for char in "abcdefghijklmnopqrstuvwxyz0123456789,.{}<>_-":
        pieces += [("▁" + char, -3.0), (char, -4.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _clip_config(vocab_size: int, projection_dim: int | None = None, hidden_size: int = 32):
    from transformers import CLIPTextConfig

    options = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        **options,
    )


def _tiny_vae(shift: bool = False):
    from diffusers import AutoencoderKL

    options = {"shift_factor": 0.0609, "scaling_factor": 1.5035} if shift else {}
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
        **options,
    )


def _tiny_unet(cross_attention_dim: int, in_channels: int, sdxl: bool, attention_levels: int = 1):
    from diffusers import UNet2DConditionModel

    options: dict = {}
    if sdxl:
        # SDXL's micro-conditioning: 6 size/crop numbers embedded at 8 each, plus the pooled text embedding (32)
        options = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "use_linear_projection": True,
            "transformer_layers_per_block": (1, 2),
            "attention_head_dim": (2, 4),
        }
    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D" if attention_levels == 2 else "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D" if attention_levels == 2 else "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=4,
        **options,
    )


def build_tiny_pipeline(
    family: str, folder: str | Path, inpainting: bool = False, seed: int = 0, attention_levels: int = 1
) -> Path:
    """Write a tiny random ``family`` pipeline (sd15, sdxl, sd3) to ``folder``; return the folder.

    ``inpainting=True`` gives the 9-channel UNet of the inpainting models (sd15,
    sdxl) and saves the matching ``*InpaintPipeline``. ``attention_levels``: at how
    many of the UNet's two resolutions it has cross-attention (1: the coarser
    only; 2: both, as real UNets have it at several resolutions, which DefectFill's
    multi-scale attention consistency needs).
    """
    import diffusers
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if attention_levels not in (1, 2):
        raise ValueError(f"attention_levels must be 1 or 2, got {attention_levels!r}")
    if inpainting and family == "sd3":
        raise ValueError("no tiny SD3 inpainting pipeline: defectkit's inpainting backends are sd15, sd2 and sdxl")
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    vocab = len(tokenizer)
    in_channels = 9 if inpainting else 4
    scheduler_config = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "steps_offset": 1,
        "clip_sample": False,
        "set_alpha_to_one": False,
    }
    if family == "sd15":
        parts = {
            "unet": _tiny_unet(32, in_channels, sdxl=False, attention_levels=attention_levels),
            "vae": _tiny_vae(),
            "text_encoder": CLIPTextModel(_clip_config(vocab)),
            "tokenizer": tokenizer,
            "scheduler": diffusers.PNDMScheduler.from_config({**scheduler_config, "skip_prk_steps": True}),
            "safety_checker": None,
            "feature_extractor": None,
            "requires_safety_checker": False,
        }
        cls = diffusers.StableDiffusionInpaintPipeline if inpainting else diffusers.StableDiffusionPipeline
    elif family == "sdxl":
        parts = {
            "unet": _tiny_unet(64, in_channels, sdxl=True, attention_levels=attention_levels),
            "vae": _tiny_vae(),
            "text_encoder": CLIPTextModel(_clip_config(vocab)),
            "text_encoder_2": CLIPTextModelWithProjection(_clip_config(vocab, projection_dim=32)),
            "tokenizer": tokenizer,
            "tokenizer_2": tiny_clip_tokenizer(),
            "scheduler": diffusers.EulerDiscreteScheduler.from_config(scheduler_config),
        }
        if inpainting:
            parts["requires_aesthetics_score"] = False
        cls = diffusers.StableDiffusionXLInpaintPipeline if inpainting else diffusers.StableDiffusionXLPipeline
    else:
        t5 = T5Config(
            vocab_size=len(tiny_t5_tokenizer()),
            d_model=64,
            d_ff=64,
            d_kv=16,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
        )
        parts = {
            "transformer": diffusers.SD3Transformer2DModel(
                sample_size=16,
                patch_size=1,
                in_channels=4,
                num_layers=1,
                attention_head_dim=8,
                num_attention_heads=4,
                caption_projection_dim=32,
                joint_attention_dim=64,
                pooled_projection_dim=64,
                out_channels=4,
            ),
            "vae": _tiny_vae(shift=True),
            "text_encoder": CLIPTextModelWithProjection(_clip_config(vocab, projection_dim=32)),
            "text_encoder_2": CLIPTextModelWithProjection(_clip_config(vocab, projection_dim=32)),
            "text_encoder_3": T5EncoderModel(t5),
            "tokenizer": tokenizer,
            "tokenizer_2": tiny_clip_tokenizer(),
            "tokenizer_3": tiny_t5_tokenizer(),
            "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        }
        cls = diffusers.StableDiffusion3Pipeline
    pipe = cls(**parts)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_controlnet(family: str, folder: str | Path, pipeline_folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ControlNet matching the tiny pipeline in ``pipeline_folder``; return ``folder``.

    sd15/sdxl: a ``ControlNetModel`` made from the pipeline's UNet (its conditioning
    embedding downsamples 2x, like the tiny VAE); sd3: an ``SD3ControlNetModel``
    with the tiny transformer's sizes.
    """
    import diffusers
    import torch

    folder = Path(folder)
    torch.manual_seed(seed)
    if family == "sd3":
        controlnet = diffusers.SD3ControlNetModel(
            sample_size=16,
            patch_size=1,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=64,
            pooled_projection_dim=64,
            out_channels=4,
        )
    elif family in ("sd15", "sdxl"):
        unet = diffusers.UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")
        if unet.config.in_channels != 4:
            # an inpainting UNet: ControlNets are made from (and match) the 4-channel text-to-image UNet
            config = dict(unet.config)
            config["in_channels"] = 4
            unet = diffusers.UNet2DConditionModel.from_config(config)
        controlnet = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
        # random, not zero, output convolutions: a test can see that the control image changes the result
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            torch.nn.init.normal_(block.weight, std=0.05)
    else:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if family == "sd3":
        for block in controlnet.controlnet_blocks:
            torch.nn.init.normal_(block.weight, std=0.05)
    controlnet.save_pretrained(folder)
    return folder


def build_tiny_depth_estimator(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random DPT depth estimator (model + image processor) to ``folder``; return it."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    config = DPTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=4,
        backbone_out_indices=[0, 1, 2, 3],
        num_attention_heads=4,
        intermediate_size=37,
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        is_hybrid=False,
        head_in_index=-1,
    )
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return folder


def build_tiny_marigold_normals(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Marigold normals pipeline (diffusers ``MarigoldNormalsPipeline``) to ``folder``."""
    import torch
    from diffusers import DDIMScheduler, MarigoldNormalsPipeline
    from transformers import CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    # Marigold's UNet sees the image latent and the noisy normals latent side by side: 8 channels in
    unet = _tiny_unet(cross_attention_dim=32, in_channels=8, sdxl=False)
    pipe = MarigoldNormalsPipeline(
        unet=unet,
        vae=_tiny_vae(),
        scheduler=DDIMScheduler(num_train_timesteps=1000, prediction_type="v_prediction"),
        text_encoder=CLIPTextModel(_clip_config(len(tokenizer))),
        tokenizer=tokenizer,
        prediction_type="normals",
        default_denoising_steps=2,
        default_processing_resolution=32,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_adapter(
    pipeline_folder: str | Path, folder: str | Path, defect_types: list[str], family: str = "sd15", seed: int = 0
) -> Path:
    """Write an ``adapter`` artifact folder (see docs/generation.md) for a tiny pipeline: LoRA + one token per class.

    The LoRA (peft, on the UNet's attention projections, random non-zero B so it
    changes the output) is saved with the pipeline class's ``save_lora_weights``;
    each embedding with the keys ``load_textual_inversion`` reads (``emb_params``
    for SD 1.5, ``clip_l``/``clip_g`` for SDXL).
    """
    import diffusers
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    if family not in ("sd15", "sdxl"):
        raise ValueError("build_tiny_adapter makes sd15 or sdxl adapters")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    lora = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    cls = diffusers.StableDiffusionXLPipeline if family == "sdxl" else diffusers.StableDiffusionPipeline
    cls.save_lora_weights(folder, unet_lora_layers=lora, weight_name="pytorch_lora_weights.safetensors")
    embeddings = []
    for defect_type in defect_types:
        token = f"<{defect_type}>"
        file = f"{defect_type}.safetensors"
        if family == "sdxl":
            tensors = {"clip_l": torch.randn(1, 32), "clip_g": torch.randn(1, 32)}
        else:
            tensors = {"emb_params": torch.randn(1, 32)}
        save_file(tensors, str(folder / file))
        embeddings.append({"file": file, "token": token, "defect_type": defect_type})
    manifest = {"family": family, "lora": "pytorch_lora_weights.safetensors", "embeddings": embeddings}
    (folder / "adapter.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder
