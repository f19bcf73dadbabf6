"""Stable Diffusion 1.5 generation: images per second of the generate step's pipeline against a plain
diffusers pipeline call with default settings, in the same run.

    python -m benchmarks.bench_generate                          # GPU: 512 px, 20 steps, batch 8, bf16, compile
    python -m benchmarks.bench_generate --device cpu --size 64 --steps 2 --batch 2 --dtype fp32 --compile 0

Both sides run the SD 1.5 architecture (UNet, VAE and CLIP text encoder built from
SD 1.5's configs, random weights: nothing is downloaded; the speed of a network
does not depend on its weights) and generate ``--batch`` images of ``--steps`` steps
at ``--size`` px, the same prompts.

Reference: ``StableDiffusionPipeline`` as loaded, fp32, its default scheduler
(PNDM), one ``pipe(prompt)`` call per image - what a plain loop over prompts does.
Ours: the same weights through :class:`defectkit_diffusion.backends.DiffusionBackend`'s
options (``--dtype`` bf16, channels_last, ``torch.compile`` of the UNet with
``--compile 1``) and :meth:`StableDiffusionGenerator.run_batch` (UniPC, one call for
the whole batch, one seeded generator per image). diffusers uses PyTorch's
scaled-dot-product attention on both sides (its default), so that part of the gain
is shared. The goal on a GPU is at least 2x.
"""

from __future__ import annotations

import copy
import tempfile

import torch

from benchmarks.harness import Benchmark, parse_args

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
}
PROMPTS = [
    "a photo of scratches defect on steel surface",
    "a photo of crazing defect on steel surface",
    "a photo of patches defect on steel surface",
    "a photo of inclusion defect on steel surface",
]


def sd15_pipeline():
    """SD 1.5's architecture with random weights, fp32, on the CPU."""
    from defectkit_diffusion.tiny import tiny_clip_tokenizer
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer(merges=48894)  # CLIP's full vocabulary (49408 tokens)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
        )
    )
    return StableDiffusionPipeline(
        unet=UNet2DConditionModel(**SD15_UNET),
        vae=AutoencoderKL(**SD15_VAE),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        argv,
        repeats=3,
        device="auto",
        size=512,
        steps=20,
        batch=8,
        dtype="bf16",
        compile=1,
        threads=0,
    )
    from defectkit_diffusion.backends import SPECS, DiffusionBackend
    from defectkit_diffusion.config import BackendConfig, GenerateConfig
    from defectkit_diffusion.generate import Job, LoadedPipeline, StableDiffusionGenerator
    from defectkit_diffusion.schedulers import SPECS as SCHEDULERS
    from defectkit_diffusion.schedulers import NamedScheduler

    from defectkit.devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, mps=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.batch)]

    base = sd15_pipeline()
    reference = copy.deepcopy(base).to(device)
    reference.set_progress_bar_config(disable=True)

    def plain() -> None:
        for prompt in prompts:
            reference(prompt, num_inference_steps=args.steps, height=args.size, width=args.size)

    # ours: the backend's options on the same weights (load_pipeline would read them from a folder)
    backend = DiffusionBackend(
        BackendConfig(model=tempfile.gettempdir(), dtype=args.dtype, compile=bool(args.compile)), SPECS["sd15"]
    )
    pipe = base.to(dtype=backend.dtype(device))
    backend.apply_options(pipe, device)
    scheduler = NamedScheduler(None, SCHEDULERS["unipc"])
    scheduler.apply(pipe, "sd15")
    generator = StableDiffusionGenerator(GenerateConfig(steps=args.steps, batch_size=args.batch))
    loaded = LoadedPipeline(pipe, backend, scheduler, [])
    jobs = [Job(i, "scratches", p, "", seed=i, guidance=7.5) for i, p in enumerate(prompts)]

    def ours() -> None:
        generator.run_batch(loaded, jobs, (args.size, args.size))

    name = (
        f"{args.dtype}" + (" + channels_last" if device.type == "cuda" else "") + (" + compile" if args.compile else "")
    )
    bench = Benchmark(
        f"SD 1.5 generation, {args.size} px, {args.steps} steps, {args.batch} images ({device.type})",
        unit="images/s",
        items=args.batch,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    bench.measure(f"defectkit ({name}, batch {args.batch})", ours, sync=sync, device=str(device))
    bench.measure("diffusers default (fp32, 1/call)", plain, reference=True, sync=sync, device=str(device))
    bench.report(args.json_path)


if __name__ == "__main__":
    main()
