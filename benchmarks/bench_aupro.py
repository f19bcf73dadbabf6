"""AUPRO on 100 anomaly maps of 256x256: defectkit's exact AUPRO vs a straightforward reference.

Ours is exact at every distinct score (see defectkit_metrics.detection). The
reference is the loop found in many anomaly-detection repositories: 200
thresholds evenly spaced between the lowest and highest score, and for each
threshold every ground-truth mask is labelled into connected components
again and every region's overlap is measured. Both integrate PRO to FPR 0.3
(interpolated at 0.3) and divide by 0.3; their values must agree within 1e-3.

    python -m benchmarks.bench_aupro [--device cuda] [--repeats 5] [--json out.jsonl]
"""

from __future__ import annotations

import numpy as np
import torch
from defectkit_metrics.detection import aupro
from scipy import ndimage
from skimage import measure

from benchmarks.harness import Benchmark, parse_args

FPR_LIMIT = 0.3


def make_maps(n: int = 100, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Half the images have 1-3 elliptic defects; maps are smoothed noise plus a partial response on them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n // 2, n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(20, size - 20, size=2)
            ry, rx = rng.integers(3, 25, size=2)
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    noise = ndimage.gaussian_filter(rng.random((n, size, size)), sigma=(0, 4, 4))
    response = ndimage.gaussian_filter(masks.astype(np.float64), sigma=(0, 3, 3))
    maps = noise + response * rng.uniform(0.02, 0.2, size=(n, 1, 1))
    return maps.astype(np.float32), masks


def reference_aupro(maps: np.ndarray, masks: np.ndarray, steps: int = 200, limit: float = FPR_LIMIT) -> float:
    """The straightforward way: per threshold, label every mask and measure every region's overlap."""
    negatives = ~masks
    n_negative = negatives.sum()
    fprs, pros = [], []
    for threshold in np.linspace(maps.max(), maps.min(), steps):
        predicted = maps >= threshold
        overlaps = []
        for binary, mask in zip(predicted, masks, strict=True):
            for region in measure.regionprops(measure.label(mask, connectivity=2)):
                rows, cols = region.coords[:, 0], region.coords[:, 1]
                overlaps.append(binary[rows, cols].sum() / region.area)
        fprs.append((predicted & negatives).sum() / n_negative)
        pros.append(np.mean(overlaps))
    fprs = np.concatenate([[0.0], fprs])
    pros = np.concatenate([[0.0], pros])
    cut = np.searchsorted(fprs, limit, side="right")
    area = np.trapezoid(pros[:cut], fprs[:cut])
    x0, x1, y0, y1 = fprs[cut - 1], fprs[cut], pros[cut - 1], pros[cut]
    y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
    return float((area + (limit - x0) * (y0 + y_limit) / 2) / limit)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], device="cpu", reference_repeats=1)
    maps, masks = make_maps()
    device = torch.device(args.device)
    maps_t = torch.from_numpy(maps).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    ours = aupro(maps_t, masks, FPR_LIMIT)
    theirs = reference_aupro(maps, masks)
    diff = abs(ours - theirs)
    print(f"AUPRO@{FPR_LIMIT}: defectkit {ours:.6f}  reference (200 thresholds) {theirs:.6f}  |diff| {diff:.2e}")
    assert diff < 1e-3, "the two AUPRO values disagree by 1e-3 or more"

    bench = Benchmark(f"AUPRO, 100 maps 256x256 ({device.type})", unit="maps/s", items=len(maps), repeats=args.repeats)
    bench.measure("defectkit exact", lambda: aupro(maps_t, masks, FPR_LIMIT), sync=sync, warmup=args.warmup)
    bench.measure(
        "reference 200 thresholds",
        lambda: reference_aupro(maps, masks),
        reference=True,
        repeats=args.reference_repeats,
        warmup=0,
    )
    rows = bench.report(args.json_path)
    ratio = next(r["speedup_vs_reference"] for r in rows if not r["reference"])
    print(f"speed-up: {ratio:.1f}x (goal on CPU: at least 50x)")


if __name__ == "__main__":
    main()
