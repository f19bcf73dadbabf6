"""LoRA training steps per second: the finetune trainer's step against a diffusers-script-style loop.

    python -m benchmarks.bench_lora                       # GPU: SD 1.5 UNet, 512 px, batch 8, bf16
    python -m benchmarks.bench_lora --device cpu --size 64 --batch 1 --steps 2 --repeats 2 --arch tiny

Both sides train the same rank-16 LoRA (peft, to_q/to_k/to_v/to_out.0) on a
UNet built from the SD 1.5 UNet config with random weights (the weights cannot
be downloaded here; the speed does not depend on them), with an SD VAE and a
CLIP ViT-L/14 text encoder of SD 1.5's shapes, AdamW at the same learning rate,
the same mixed precision, gradient clipping at 1.0, the same batch and size.

* reference: the step of diffusers' ``examples/text_to_image/train_text_to_image_lora.py``:
  VAE-encode the batch and run the text encoder every step, ``torch.optim.AdamW``
  with its defaults, the frozen weights in the mixed-precision dtype, loss in fp32.
* defectkit: the finetune trainer's own step (``Objective``, ``_inputs``,
  ``_optimizer_step``): latents and prompt embeddings cached once because the
  VAE and text encoder are frozen, fused AdamW, the same dtypes.

Also measured: DoRA's cost over LoRA, and peak GPU memory with 8-bit AdamW
and with gradient checkpointing (CUDA only; on the CPU peak memory is not
reported). A step is ``--steps`` optimizer steps; throughput in steps/s.
"""

from __future__ import annotations

import gc

import torch

from benchmarks.harness import Benchmark, parse_args

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
TINY_UNET = {
    **SD15_UNET,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
}
SD_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}
TINY_VAE = {**SD_VAE, "block_out_channels": (16, 16, 16, 16), "norm_num_groups": 8, "layers_per_block": 1}
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def components(arch: str, seed: int = 0):
    """A StableDiffusionPipeline of SD 1.5's shapes (or tiny ones) with random weights, on the CPU."""
    from defectkit_diffusion.tiny import tiny_clip_tokenizer
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    vocab = len(tokenizer)
    full = arch == "sd15"
    text = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=768 if full else 32,
        intermediate_size=3072 if full else 37,
        num_hidden_layers=12 if full else 2,
        num_attention_heads=12 if full else 4,
        max_position_embeddings=77,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    return StableDiffusionPipeline(
        unet=UNet2DConditionModel(**(SD15_UNET if full else TINY_UNET)),
        vae=AutoencoderKL(**(SD_VAE if full else TINY_VAE)),
        text_encoder=CLIPTextModel(text),
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def batch_data(batch: int, size: int):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    prompts = [f"a photo of scratches defect on a steel surface, sample {i % 4}" for i in range(batch)]
    return pixels, prompts


class Reference:
    """The training step of diffusers' train_text_to_image_lora.py (its structure, its defaults)."""

    def __init__(self, arch, device, dtype, batch, size):
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        pipe = components(arch)
        self.unet, self.vae, self.text_encoder, self.tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        self.scheduler = pipe.scheduler
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
        self.unet.add_adapter(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian", target_modules=TARGETS))
        for module in (self.unet, self.vae, self.text_encoder):
            module.to(device, dtype=dtype)
        cast_training_params(self.unet, dtype=torch.float32)
        self.params = [p for p in self.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        pixels, prompts = batch_data(batch, size)
        self.pixels = pixels.to(device, dtype)
        self.input_ids = self.tokenizer(
            prompts, max_length=77, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        self.device, self.dtype = device, dtype

    def step(self):
        latents = self.vae.encode(self.pixels).latent_dist.sample() * self.vae.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (latents.shape[0],), device=self.device).long()
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        encoder_hidden_states = self.text_encoder(self.input_ids, return_dict=False)[0]
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            pred = self.unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()


class Ours:
    """The finetune trainer's step, driven without a run (same code path as ``train``)."""

    def __init__(self, arch, device, dtype, batch, size, trainer="lora", optimizer="adamw_fused", checkpointing=False):
        from defectkit_finetune.config import DoraTrainConfig, LoraTrainConfig
        from defectkit_finetune.data import BatchSource, Record
        from defectkit_finetune.models import backbone_from_pipeline
        from defectkit_finetune.optim import build_lr_scheduler, build_optimizer
        from defectkit_finetune.trainer import DoraTrainer, LoraTrainer, Objective

        precision = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        cls, config_cls = (DoraTrainer, DoraTrainConfig) if trainer == "dora" else (LoraTrainer, LoraTrainConfig)
        self.config = config_cls(
            rank=16,
            lr=1e-4,
            optimizer=optimizer,
            resolution=size,
            batch_size=batch,
            mixed_precision=precision,
            gradient_checkpointing=checkpointing,
            augment={"hflip": 0, "rotate": 0, "translate": 0, "brightness": 0, "contrast": 0},
        )
        self.trainer = cls(self.config)
        self.backbone = backbone_from_pipeline(components(arch), "sd15")
        self.trainer.attach(self.backbone, ["scratches"])
        self.trainer.place(self.backbone, device, dtype)
        pixels, prompts = batch_data(batch, size)
        images = ((pixels + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        records = [
            Record(f"s{i}", "scratches", "steel", p, images[i], torch.zeros(1, size, size, dtype=torch.bool),
                   (size, size), (0, 0))
            for i, p in enumerate(prompts)
        ]  # fmt: skip
        self.source = BatchSource(records, self.config, 0, 1)
        self.latents = self.trainer._cache_latents(self.backbone, self.source, device)
        self.text = self.trainer._cache_text(self.backbone, records, device, dtype)
        self.model = Objective(self.backbone, self.config, None, False)
        groups = self.trainer.parameter_groups(self.backbone)
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = build_optimizer(groups, self.config, device)
        self.schedule = build_lr_scheduler(self.optimizer, self.config)
        self.autocast = dict(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.device, self.dtype, self.index = device, dtype, 0

    def step(self):
        inputs = self.trainer._inputs(
            self.backbone, self.source, self.index, self.latents, self.text, self.device, self.dtype
        )
        with torch.autocast(**self.autocast):
            loss = self.model(**inputs)
        loss.backward()
        self.trainer._optimizer_step(self.optimizer, None, self.params, self.index, None)
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.index += 1


def main(argv: list[str] | None = None) -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        argv,
        repeats=3,
        device="cuda" if torch.cuda.is_available() else "cpu",
        size=512,
        batch=8,
        steps=10,
        arch="sd15",
        precision="bf16" if torch.cuda.is_available() else "no",
        threads=0,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    bench = Benchmark(
        f"LoRA training, {args.arch} UNet, {args.size} px, batch {args.batch}, {args.precision} ({args.device})",
        unit="steps/s",
        items=args.steps,
        repeats=args.repeats,
        warmup=args.warmup,
    )

    def run(name, make, reference=False):
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = make()

        def steps():
            for _ in range(args.steps):
                trainer.step()

        result = bench.measure(name, steps, reference=reference, sync=sync)
        if cuda:
            result.extra["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        return result  # the trainer goes with the closure; run() collects garbage before the next one

    shape = (args.arch, device, dtype, args.batch, args.size)
    run("reference (diffusers script)", lambda: Reference(*shape), reference=True)
    run("defectkit lora", lambda: Ours(*shape))
    run("defectkit dora", lambda: Ours(*shape, trainer="dora"))
    run("defectkit lora, adamw_8bit", lambda: Ours(*shape, optimizer="adamw_8bit"))
    run("defectkit lora, grad. checkpointing", lambda: Ours(*shape, checkpointing=True))
    rows = bench.report(args.json_path)
    if cuda:
        for row in rows:
            print(f"  peak memory {row['implementation']:<36} {row['peak_memory_gib']:.3f} GiB")
    by_name = {row["implementation"]: row for row in rows}
    print(
        f"  DoRA cost over LoRA: {by_name['defectkit lora']['median'] / by_name['defectkit dora']['median']:.2f}x time"
    )


if __name__ == "__main__":
    main()
