"""decodiff inference: batched on-device maps against the official evaluation script's path, in the same run.

    python -m benchmarks.bench_decodiff                      # GPU: UNet_L, 256 px, 5 steps, bf16
    python -m benchmarks.bench_decodiff --device cpu --model-size XS --size 128 --images 16 --threads 2

Both sides run the same models (random weights of the real shapes: UNet of
``--model-size`` for 15 classes, an AutoencoderKL with Stable Diffusion's VAE
architecture, as ``stabilityai/sd-vae-ft-ema``, which cannot be downloaded
here), the same 5 DDIM deviation steps from the clean latent and the same
image map (the decoded corrected latent against the decoded clean latent).
Ours: batches of ``--batch`` through
:class:`defectkit_decodiff.detector.AnomalyScorer`, both latents decoded in one
VAE call, blur, clip, resize and fusion on the device for the whole batch.
Reference: the official evaluation script (farzad-bz/DeCo-Diff,
``evaluation_DeCo_Diff.py``) as it is: batches of 8 through the VAE encoder,
the sampler and two VAE decodes, every result kept as a per-image tensor,
then its per-image post-processing in numpy
(``scipy.ndimage.gaussian_filter``, ``skimage.transform.resize``, the geometric
and the arithmetic map both computed, as the script does).
"""

from __future__ import annotations

import numpy as np
import torch
from defectkit_decodiff.config import DecoDiffDetectConfig, DecoDiffModelConfig
from defectkit_decodiff.detector import AnomalyScorer
from defectkit_decodiff.diffusion import cosine_alphas_cumprod, ddim_deviation_sample
from defectkit_decodiff.model import Checkpoint, LatentCodec, build_unet
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

from benchmarks.harness import Benchmark, parse_args

SD_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
}


def scorer(model_size: str, size: int, device: torch.device, precision: str) -> AnomalyScorer:
    from diffusers import AutoencoderKL

    config = DecoDiffModelConfig(latent="vae", model_size=model_size, image_size=size, crop_size=size)
    unet = build_unet(config, 4, 15)
    # a fresh UNet predicts zero deviation (zero-initialised outputs): perturb it, as training would,
    # so that the maps are not all zero and the two sides' scores can be compared
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    unet = unet.to(device).eval()
    checkpoint = Checkpoint(config, [f"class{i}" for i in range(15)], 4, 0, unet, None)
    codec = LatentCodec(config, device, vae=AutoencoderKL(**SD_VAE))
    ours = AnomalyScorer(checkpoint, DecoDiffDetectConfig(precision=precision), device, codec)
    return ours


OFFICIAL_BATCH = 8  # the official evaluation's DataLoader batch size


def official_evaluation(ours: AnomalyScorer, images: torch.Tensor, classes: torch.Tensor) -> list[float]:
    """The official evaluation's inference and map code path, on our models (image score: the map's maximum)."""
    abar = cosine_alphas_cumprod(10)
    autocast = torch.autocast(ours.device.type, dtype=torch.bfloat16, enabled=ours.config.precision == "bf16")
    encoded_s, image_samples_s, latent_samples_s, x0_s = [], [], [], []
    for i in range(0, len(images), OFFICIAL_BATCH):
        x, cls = images[i : i + OFFICIAL_BATCH], classes[i : i + OFFICIAL_BATCH]
        with torch.no_grad(), autocast:
            encoded = ours.codec.encode(x)
            latent_samples, _ = ddim_deviation_sample(ours.checkpoint.unet, encoded, cls, abar, 5, 5)
            image_samples = ours.codec.decode(latent_samples)
            x0 = ours.codec.decode(encoded)  # the second decode: the clean latent is the image map's reference
        encoded_s += [e.unsqueeze(0) for e in encoded]
        image_samples_s += [s.unsqueeze(0) for s in image_samples]
        latent_samples_s += [s.unsqueeze(0) for s in latent_samples]
        x0_s += [s.unsqueeze(0) for s in x0]
    scores = []
    for x, encoded, image_samples, latent_samples in zip(x0_s, encoded_s, image_samples_s, latent_samples_s, strict=True):
        image_diff = torch.abs(image_samples - x).to(torch.float32).mean(axis=0).cpu()
        image_diff = image_diff.numpy().transpose(1, 2, 0).max(axis=2)
        image_diff = gaussian_filter(np.clip(image_diff, 0.0, 0.4) * 2.5, sigma=3)
        latent_diff = torch.abs(latent_samples - encoded).to(torch.float32).mean(axis=0).cpu()
        latent_diff = latent_diff.numpy().transpose(1, 2, 0).mean(axis=2)
        latent_diff = gaussian_filter(np.clip(latent_diff, 0.0, 0.2) * 5, sigma=1)
        latent_diff = resize(latent_diff, image_diff.shape)
        geometric = np.sqrt(image_diff * latent_diff)
        _arithmetic = 0.5 * image_diff + 0.5 * latent_diff  # the script computes it too
        scores.append(float(geometric.max()))
    return scores


def batched(ours: AnomalyScorer, images: torch.Tensor, classes: torch.Tensor, batch: int) -> list[float]:
    scores = []
    for i in range(0, len(images), batch):
        scores += ours.score(images[i : i + batch], classes[i : i + batch])[1].tolist()
    return scores


def main(argv: list[str] | None = None) -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        argv,
        threads=2,
        repeats=3,
        device="auto",
        model_size="L",
        size=256,
        images=64,
        batch=16,
        precision="auto",
    )
    torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    precision = ("bf16" if device.type == "cuda" else "fp32") if args.precision == "auto" else args.precision
    torch.manual_seed(0)
    ours = scorer(args.model_size, args.size, device, precision)
    images = (torch.rand(args.images, 3, args.size, args.size) * 2 - 1).to(device)
    classes = torch.randint(0, 15, (args.images,)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    count = min(len(images), 2 * OFFICIAL_BATCH)
    a = np.array(official_evaluation(ours, images[:count], classes[:count]))
    b = np.array(batched(ours, images[:count], classes[:count], args.batch))
    print(f"same scores on {count} images: max difference {np.abs(a - b).max():.2e} ({precision})")
    bench = Benchmark(
        f"decodiff inference, UNet_{args.model_size}, {args.size} px, 5 DDIM steps, {precision}, {device.type}"
        + (f" x{args.threads} threads" if device.type == "cpu" else ""),
        unit="img/s",
        items=args.images,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    bench.measure(
        f"official evaluation: batches of {OFFICIAL_BATCH}, two decodes, numpy maps",
        lambda: official_evaluation(ours, images, classes),
        reference=True,
        sync=sync,
    )
    bench.measure(
        f"batches of {args.batch}, maps on device", lambda: batched(ours, images, classes, args.batch), sync=sync
    )
    bench.report(args.json_path)


if __name__ == "__main__":
    main()
