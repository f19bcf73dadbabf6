"""Generation figures: FID, KID, IS, LPIPS, IC-LPIPS, CLIP score, SSIM, Edge-SSIM, LBP.

Images come in as uint8 tensors (N, 3, S, S) and are fed to the networks in
batches as float [0, 1]. Distribution figures (FID, KID, IS) wrap torchmetrics;
the pairwise ones compute one distance per (generated, real) pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from defectkit.data.sample import read_image
from defectkit.errors import DefectkitError
from defectkit_metrics.detection import UndefinedMetricError
from defectkit_metrics.extractors import ExtractorError, extractor_name, feature_extractor, load_factory

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: the largest Sobel gradient magnitude of a [0, 1] image: |gx| and |gy| reach 4 each
SOBEL_MAX = 4.0 * 2.0**0.5


def load_images(paths: Sequence, size: int) -> torch.Tensor:
    """Images (paths or objects with ``load_image()``) as uint8 RGB (N, 3, size, size)."""
    from PIL import Image

    arrays = []
    for item in paths:
        if hasattr(item, "load_image"):
            image = item.load_image()
        else:
            image = read_image(Path(item))
        arrays.append(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _batches(images: torch.Tensor, batch_size: int, device: torch.device):
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size].to(device).float() / 255.0


def _check_sizes(real: torch.Tensor, fake: torch.Tensor, what: str, minimum: int = 2) -> None:
    if real.shape[0] < minimum or fake.shape[0] < minimum:
        raise UndefinedMetricError(
            f"{what} needs at least {minimum} real and {minimum} generated images, "
            f"got {real.shape[0]} real and {fake.shape[0]} generated"
        )


def _torchmetrics_feature(spec: str, purpose: str):
    try:
        return feature_extractor(spec, purpose)
    except ExtractorError:
        raise
    except (RuntimeError, OSError) as exc:
        raise ExtractorError(f"{purpose} extractor {spec!r}: cannot load its weights ({exc})") from None


def _build(metric_cls, spec: str, purpose: str, normalize: bool = True, **kwargs):
    """A torchmetrics metric fed float [0, 1] images (``normalize``: it converts them for Inception)."""
    feature = _torchmetrics_feature(spec, purpose)
    try:
        return metric_cls(feature=feature, normalize=normalize, **kwargs)
    except (ModuleNotFoundError, RuntimeError, OSError) as exc:
        raise ExtractorError(f"{purpose} extractor {spec!r}: cannot build it ({exc})") from None


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, extractor: str, device: torch.device, batch_size: int = 32) -> dict:
    """``{"fid", "fid_extractor"}`` of uint8 image sets."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_sizes(real, fake, "FID")
    metric = _build(FrechetInceptionDistance, extractor, "fid").to(device)
    for batch in _batches(real, batch_size, device):
        metric.update(batch, real=True)
    for batch in _batches(fake, batch_size, device):
        metric.update(batch, real=False)
    return {"fid": float(metric.compute()), "fid_extractor": extractor_name(extractor)}


@torch.no_grad()
def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    extractor: str,
    device: torch.device,
    subset_size: int = 1000,
    subsets: int = 100,
    batch_size: int = 32,
) -> dict:
    """``{"kid_mean", "kid_std", "kid_subset_size", "kid_extractor"}``.

    The subset size is lowered to the smaller set's size: with NEU's 300
    images a class the default 1000 would be impossible.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    _check_sizes(real, fake, "KID")
    size = min(subset_size, real.shape[0], fake.shape[0])
    metric = _build(KernelInceptionDistance, extractor, "kid", subset_size=size, subsets=subsets).to(device)
    for batch in _batches(real, batch_size, device):
        metric.update(batch, real=True)
    for batch in _batches(fake, batch_size, device):
        metric.update(batch, real=False)
    mean, std = metric.compute()
    return {
        "kid_mean": float(mean),
        "kid_std": float(std),
        "kid_subset_size": float(size),
        "kid_extractor": extractor_name(extractor),
    }


@torch.no_grad()
def inception_score(fake: torch.Tensor, extractor: str, device: torch.device, splits: int = 10, batch_size: int = 32):
    """``{"inception_score_mean", "inception_score_std", "inception_score_extractor"}``.

    The extractor must output class logits (``inception``: the FID Inception's 1008 classes).
    """
    from torchmetrics.image.inception import InceptionScore

    if fake.shape[0] < 2:
        raise UndefinedMetricError(f"Inception Score needs at least 2 generated images, got {fake.shape[0]}")
    # unlike FID/KID, InceptionScore turns float images into bytes even for a custom model,
    # so normalize only for the Inception network, which expects bytes
    metric = _build(
        InceptionScore,
        extractor,
        "inception_score",
        normalize=extractor == "inception",
        splits=min(splits, fake.shape[0]),
    ).to(device)
    for batch in _batches(fake, batch_size, device):
        metric.update(batch)
    mean, std = metric.compute()
    return {
        "inception_score_mean": float(mean),
        "inception_score_std": float(std),
        "inception_score_extractor": extractor_name(extractor),
    }


@torch.no_grad()
def paired(
    fake: torch.Tensor,
    real: torch.Tensor,
    distance: Distance,
    device: torch.device,
    batch_size: int = 32,
) -> torch.Tensor:
    """``distance`` of each fake image to the real image at the same index, as a float tensor."""
    out = [
        distance(a, b)
        for a, b in zip(_batches(fake, batch_size, device), _batches(real, batch_size, device), strict=True)
    ]
    return torch.cat(out).double().cpu()


@torch.no_grad()
def all_pairs(
    fake: torch.Tensor, real: torch.Tensor, distance: Distance, device: torch.device, batch_size: int = 32
) -> torch.Tensor:
    """(n_fake, n_real) matrix of ``distance`` between every fake and every real image."""
    rows = []
    for i in range(fake.shape[0]):
        one = fake[i : i + 1].expand(real.shape[0], -1, -1, -1)
        rows.append(paired(one, real, distance, device, batch_size))
    return torch.stack(rows)


@torch.no_grad()
def ic_lpips(
    fake: torch.Tensor,
    fake_types: Sequence[str],
    centres: torch.Tensor,
    centre_types: Sequence[str],
    distance: Distance,
    device: torch.device,
    batch_size: int = 32,
) -> float:
    """Intra-cluster LPIPS, as the defect-generation papers (DefectFill, AnomalyDiffusion) report diversity.

    Each generated image joins the cluster of its nearest (by LPIPS) centre of
    the same defect type; the figure is the mean over clusters with at least
    two members of the mean pairwise LPIPS inside the cluster. Higher = more diverse.
    """
    cluster_means = []
    fake_types, centre_types = list(fake_types), list(centre_types)
    for defect_type in sorted(set(fake_types)):
        f_idx = [i for i, t in enumerate(fake_types) if t == defect_type]
        c_idx = [i for i, t in enumerate(centre_types) if t == defect_type]
        if not c_idx and "+" in defect_type:
            # a combined group (DefectFill's hole+color): its images cluster around the centres of its parts
            parts = set(defect_type.split("+"))
            c_idx = [i for i, t in enumerate(centre_types) if t in parts]
        if not c_idx:
            raise DefectkitError(f"IC-LPIPS: no cluster centre (training image) of defect type {defect_type!r}")
        nearest = all_pairs(fake[f_idx], centres[c_idx], distance, device, batch_size).argmin(dim=1)
        for cluster in nearest.unique():
            members = [f_idx[i] for i in torch.nonzero(nearest == cluster).flatten().tolist()]
            if len(members) < 2:
                continue
            pairs = list(combinations(members, 2))
            left = fake[[a for a, _ in pairs]]
            right = fake[[b for _, b in pairs]]
            cluster_means.append(float(paired(left, right, distance, device, batch_size).mean()))
    if not cluster_means:
        raise UndefinedMetricError(
            "IC-LPIPS needs at least two generated images nearest to one training image; generate more images"
        )
    return float(np.mean(cluster_means))


def ssim_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pair SSIM of float [0, 1] batches (higher = more similar)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the grey image, scaled to [0, 1], as (N, 1, H, W)."""
    gray = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    kernels = torch.stack([kx, kx.T])[:, None]
    grad = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
    return (grad.pow(2).sum(dim=1, keepdim=True).sqrt() / SOBEL_MAX).clamp(0, 1)


def canny_edges(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Canny edge maps (scikit-image) of the grey images, as float (N, 1, H, W)."""
    from skimage.feature import canny

    gray = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).cpu().numpy()
    edges = np.stack([canny(g, sigma=sigma) for g in gray]).astype(np.float32)
    return torch.from_numpy(edges)[:, None].to(images.device)


def edge_ssim_distance(edges: str, canny_sigma: float = 1.0) -> Distance:
    """Per-pair SSIM of edge maps."""

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if edges == "canny":
            return ssim_distance(canny_edges(a, canny_sigma), canny_edges(b, canny_sigma))
        return ssim_distance(sobel_edges(a), sobel_edges(b))

    return distance


def lbp_histogram(images: torch.Tensor, points: int, radius: float) -> np.ndarray:
    """Pooled, normalised histogram of uniform LBP codes (P + 2 bins) over uint8 images."""
    from skimage.feature import local_binary_pattern

    gray = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).round().to(torch.uint8).numpy()
    counts = np.zeros(points + 2, dtype=np.float64)
    for g in gray:
        codes = local_binary_pattern(g, points, radius, method="uniform")
        counts += np.bincount(codes.astype(np.int64).ravel(), minlength=points + 2)
    return counts / counts.sum()


def lbp_similarity(
    fake: torch.Tensor,
    fake_types: Sequence[str],
    real: torch.Tensor,
    real_types: Sequence[str],
    points: int = 8,
    radius: float = 1.0,
) -> dict:
    """``{"lbp_intersection", "lbp_chi2"}`` of pooled LBP histograms, averaged over defect types.

    Histograms are normalised before comparing (the raw-count chi-square of
    seed 000 grows with image size and is not a similarity). Intersection is
    1 for identical texture statistics; chi-square distance is 0 for them.
    """
    intersections, chi2s = [], []
    fake_types, real_types = list(fake_types), list(real_types)
    for defect_type in sorted(set(fake_types)):
        r_idx = [i for i, t in enumerate(real_types) if t == defect_type]
        if not r_idx:
            raise DefectkitError(f"LBP: no real image of defect type {defect_type!r} to compare with")
        f_idx = [i for i, t in enumerate(fake_types) if t == defect_type]
        h_fake = lbp_histogram(fake[f_idx], points, radius)
        h_real = lbp_histogram(real[r_idx], points, radius)
        total = h_fake + h_real
        nonzero = total > 0
        intersections.append(np.minimum(h_fake, h_real).sum())
        chi2s.append(0.5 * np.sum((h_fake - h_real)[nonzero] ** 2 / total[nonzero]))
    return {"lbp_intersection": float(np.mean(intersections)), "lbp_chi2": float(np.mean(chi2s))}


def load_clip(model: str, pretrained: str, device: torch.device):
    """``(model, preprocess, tokenizer)`` from open_clip, or from a factory import string."""
    if ":" in model:
        built = load_factory(model, "clip_score")
        if not (isinstance(built, tuple) and len(built) == 3):
            raise ExtractorError(f"clip_score model {model!r}: the factory must return (model, preprocess, tokenizer)")
        clip, preprocess, tokenizer = built
    else:
        import open_clip

        try:
            clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained)
            tokenizer = open_clip.get_tokenizer(model)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ExtractorError(f"clip_score: cannot load open_clip {model!r} / {pretrained!r} ({exc})") from None
    return clip.to(device).eval(), preprocess, tokenizer


@torch.no_grad()
def clip_score(
    images: Sequence, prompts: Sequence[str], model: str, pretrained: str, device: torch.device, batch_size: int = 32
) -> dict:
    """``{"clip_score", "clip_score_model"}``: mean of max(100 cos(image, prompt), 0), as torchmetrics defines it.

    ``images`` are paths; open_clip's own preprocessing is applied.
    """

    clip, preprocess, tokenizer = load_clip(model, pretrained, device)
    scores = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pixels = []
        for path in chunk:
            pixels.append(preprocess(read_image(Path(path))))
        image_emb = clip.encode_image(torch.stack(pixels).to(device)).float()
        text_emb = clip.encode_text(tokenizer(list(prompts[start : start + batch_size])).to(device)).float()
        cosine = F.cosine_similarity(image_emb, text_emb, dim=-1)
        scores.append((100 * cosine).clamp(min=0).cpu())
    name = model if ":" in model else f"{model}/{pretrained}"
    return {"clip_score": float(torch.cat(scores).mean()), "clip_score_model": name}
