"""Image- and pixel-level detection figures: AUROC, AP, F1-max and AUPRO, exact and vectorised.

Everything here works on torch tensors on whatever device the maps are on (a
GPU when there is one), with no Python loop over thresholds or regions:

- AUROC, AP and F1-max share one descending sort of the scores; equal scores
  form one threshold (ties are grouped, never split by sort order).
- AP is the step-wise average precision ``sum_k (R_k - R_{k-1}) P_k`` of
  :func:`sklearn.metrics.average_precision_score`, not a trapezoid under the
  precision-recall curve (the trapezoid over-states AP when precision jumps).
- AUPRO is exact at every distinct threshold: PRO changes only at defect-pixel
  scores, so those are sorted once and the defect-free pixels are counted
  between them by a binned search (see :func:`_pro_curve`), which gives the same
  curve as one global sort of all pixels at a fraction of the cost. The curve
  is integrated from FPR 0 to ``fpr_limit`` (0.3), interpolated at the limit,
  and divided by the limit, so the figure lies in [0, 1]. Regions are the
  8-connected components of each ground-truth mask, labelled once per mask.

We compute the curves ourselves rather than calling torchmetrics' binary
AUROC/AP once each: one shared sort serves the three figures (torchmetrics
would sort three times) and the cumulative counts are float64 (exact for any
pixel count); torchmetrics has no AUPRO.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from defectkit.errors import DefectkitError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: the keys of :func:`detection_metrics`, in the order they are reported
DETECTION_KEYS: tuple[str, ...] = (
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1max",
    "pixel_aupro",
)

#: 8-connectivity for ground-truth regions (a 3x3 block of ones)
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class UndefinedMetricError(DefectkitError):
    """A figure that has no value for this data (AUROC with only one class present)."""


def _as_tensor(values: ArrayLike | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values if device is None else values.to(device)
    return torch.as_tensor(np.asarray(values), device=device)


def _check_two_classes(targets: torch.Tensor, what: str) -> None:
    n_pos = int(targets.sum().item())
    n_neg = targets.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        present = "defective" if n_pos else "normal"
        raise UndefinedMetricError(
            f"{what} is undefined: all {targets.numel()} examples are {present}; "
            "AUROC, AP and F1-max need both normal and defective examples in the test set"
        )


def _check_finite(scores: torch.Tensor, what: str) -> None:
    # one reduction instead of a mask: a float64 sum is finite exactly when every value is
    # (float32 values cannot overflow it), and half the memory traffic of isfinite().all()
    if not bool(torch.isfinite(scores.sum(dtype=torch.float64))):
        raise DefectkitError(f"{what}: contains NaN or infinite values; fix the detector's output before evaluating")


def _sorted_counts(scores: torch.Tensor, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Cumulative sums of ``weights`` in descending score order, taken at the end of each tie group.

    Entry ``k`` of each result is the total weight of every element whose score
    is at least the ``k``-th largest distinct score: the value of that running
    count at threshold ``score >= t_k``.
    """
    order = torch.argsort(scores, descending=True)
    sorted_scores = scores[order]
    # the last element of each run of equal scores closes a threshold
    ends = torch.nonzero(sorted_scores[1:] != sorted_scores[:-1]).flatten()
    ends = torch.cat([ends, torch.tensor([scores.numel() - 1], device=scores.device)])
    return [torch.cumsum(w[order].to(torch.float64), 0)[ends] for w in weights]


def ranking_metrics(scores: ArrayLike | torch.Tensor, targets: ArrayLike | torch.Tensor, what: str = "AUROC") -> dict:
    """AUROC, AP and F1-max of ``scores`` against binary ``targets`` from one sort.

    Returns ``{"auroc", "ap", "f1max"}`` as floats; raises
    :class:`UndefinedMetricError` when ``targets`` holds one class only.
    """
    scores = _as_tensor(scores).flatten()
    targets = _as_tensor(targets, scores.device).flatten().bool()
    if scores.numel() != targets.numel():
        raise ValueError(f"{what}: {scores.numel()} scores for {targets.numel()} targets")
    _check_finite(scores, what)
    _check_two_classes(targets, what)
    if not scores.is_floating_point():
        scores = scores.double()
    tps, fps = _sorted_counts(scores, [targets.double(), (~targets).double()])
    n_pos, n_neg = tps[-1], fps[-1]
    zero = tps.new_zeros(1)
    tpr = torch.cat([zero, tps / n_pos])
    fpr = torch.cat([zero, fps / n_neg])
    auroc = torch.trapezoid(tpr, fpr)
    # step-wise AP: each threshold's precision weighted by the recall it adds
    precision = tps / (tps + fps)
    recall_gain = torch.diff(tpr)
    ap = torch.sum(recall_gain * precision)
    # F1 = 2PR/(P+R) = 2 TP / (predicted positives + actual positives); never 0/0
    f1max = torch.max(2 * tps / (tps + fps + n_pos))
    return {"auroc": float(auroc), "ap": float(ap), "f1max": float(f1max)}


def label_regions(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """The defect pixels of ``masks`` and the ground-truth region each belongs to.

    Regions are the 8-connected components of each mask, numbered 0..R-1
    across all masks. Returns ``(positions, region_ids, R)``: positions index
    the masks flattened and concatenated in order.
    """
    from scipy import ndimage

    positions, ids = [], []
    pixel_offset = region_offset = 0
    for mask in masks:
        labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
        flat = labels.ravel()
        found = np.flatnonzero(flat)
        positions.append(found + pixel_offset)
        ids.append(flat[found].astype(np.int64) - 1 + region_offset)
        pixel_offset += flat.size
        region_offset += count
    if not positions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
    return np.concatenate(positions), np.concatenate(ids), region_offset


def aupro(
    maps: Sequence[Any] | torch.Tensor,
    masks: Sequence[Any] | torch.Tensor,
    fpr_limit: float = 0.3,
) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, divided by it (in [0, 1]).

    ``maps`` and ``masks`` are per-image pairs of the same H×W (use
    :func:`prepare_maps` to resize maps first); masks are boolean. PRO at a
    threshold is the mean over all ground-truth regions of the share of the
    region's pixels at or above it; FPR is the share of defect-free pixels at or
    above it, over all images (normal images included).
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    map_list = [_as_tensor(m) for m in maps]
    mask_list = [np.asarray(m.cpu() if isinstance(m, torch.Tensor) else m, dtype=bool) for m in masks]
    _check_pairs(map_list, mask_list)
    device = map_list[0].device
    # a stacked (N, H, W) tensor is flattened without a copy
    scores = maps.reshape(-1) if isinstance(maps, torch.Tensor) else torch.cat([m.flatten() for m in map_list])
    _check_finite(scores, "anomaly maps")
    positions_np, regions_np, n_regions = label_regions(mask_list)
    positions = torch.as_tensor(positions_np, device=device)
    region = torch.as_tensor(regions_np, device=device)
    n_negative = scores.numel() - positions.numel()
    if n_regions == 0:
        raise UndefinedMetricError("pixel AUPRO is undefined: no ground-truth mask has a defect pixel")
    if n_negative == 0:
        raise UndefinedMetricError("pixel AUPRO is undefined: every pixel is a defect pixel, so FPR is undefined")
    inside = torch.zeros(scores.numel(), dtype=torch.bool, device=device)
    inside[positions] = True
    kept_negative = _negatives_to_limit(scores, inside, n_negative, fpr_limit)
    fpr, pro = _pro_curve(scores[positions], region, kept_negative, n_regions, n_negative)
    return float(_area_to_limit(fpr, pro, fpr_limit) / fpr_limit)


def _negatives_to_limit(scores: torch.Tensor, inside: torch.Tensor, n_negative: int, fpr_limit: float) -> torch.Tensor:
    """The defect-free pixel scores that can shape the curve up to ``fpr_limit`` (a superset of them).

    Only defect-free pixels scoring at least the first threshold whose FPR
    passes the limit matter; a cut at or below that threshold loses nothing.
    The cut is estimated from a subsample with a margin and checked exactly on
    all pixels; if the check fails every defect-free pixel is kept, so the
    result never depends on the estimate.
    """
    needed = min(n_negative, int(fpr_limit * n_negative) + 1)
    share = needed / n_negative + 0.02
    stride = max(1, scores.numel() // 200_000)
    sample = scores[::stride][~inside[::stride]]
    if share < 1.0 and sample.numel() > 0:
        cut = torch.kthvalue(sample, max(1, int((1.0 - share) * sample.numel()))).values
        keep = (scores >= cut) & ~inside
        if int(keep.sum().item()) >= needed:
            return scores[keep]
    return scores[~inside]


def _pro_curve(
    positive: torch.Tensor, region: torch.Tensor, negative: torch.Tensor, n_regions: int, n_negative: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact (FPR, PRO) curve, from a sort of the defect pixels only.

    PRO changes only at defect-pixel scores, so only those are sorted (as the
    distinct values ``u``). Each defect-free pixel is placed among them
    (:func:`_count_below`): one equal to some ``u_j`` moves FPR together with PRO at
    ``u_j`` (a diagonal step, how ties are handled); one strictly between
    ``u_j`` and the next lower value moves FPR while PRO stays flat. Flat runs
    add PRO x dFPR whether their pixels are sorted or counted, so the
    curve's area and its value at the limit are those of the full per-pixel
    curve, without sorting the (many) defect-free pixels. ``negative`` may
    omit defect-free pixels below the limit's threshold (see
    :func:`_negatives_to_limit`); FPR is still relative to all ``n_negative``.
    """
    sizes = torch.bincount(region, minlength=n_regions).to(torch.float64)
    # a pixel of region r adds 1/(|r| * R) to PRO when the threshold passes it
    weight = 1.0 / (sizes[region] * n_regions)
    values, inverse = torch.unique(positive, sorted=True, return_inverse=True)  # ascending
    k = values.numel()
    pro_step = torch.zeros(k, dtype=torch.float64, device=positive.device).index_add_(0, inverse, weight)
    # below = number of values < s; the pixel ties with values[below] or lies in gap `below`
    below = _count_below(values, negative)
    ties = (values[below.clamp(max=k - 1)] == negative) & (below < k)
    # one counting pass: slot 2i counts pixels in gap i (gap k: above every value), 2i+1 ties with values[i]
    counts = torch.bincount(2 * below + ties, minlength=2 * k + 2).to(torch.float64).view(k + 1, 2)
    gap_count, tie_count = counts[:, 0], counts[:k, 1]
    # walk thresholds from high to low: the gap above values[k-1], then for each value its ties and the gap below
    d_fpr = torch.cat([gap_count[k:], torch.stack([tie_count.flip(0), gap_count[:k].flip(0)], dim=1).flatten()])
    zeros = torch.zeros_like(pro_step)
    d_pro = torch.cat([zeros[:1], torch.stack([pro_step.flip(0), zeros], dim=1).flatten()])
    start = d_fpr.new_zeros(1)
    return torch.cat([start, torch.cumsum(d_fpr, 0) / n_negative]), torch.cat([start, torch.cumsum(d_pro, 0)])


def _count_below(values: torch.Tensor, queries: torch.Tensor, bins_per_value: int = 16) -> torch.Tensor:
    """``torch.searchsorted(values, queries)`` (how many ``values`` are < each query), faster for many queries.

    Queries are first put in equal-width bins over the range of ``values``; the
    bin index is a monotone function of the score, so a query in a bin that
    holds no value has exactly as many values below it as lie in lower bins.
    Only queries in the few bins that hold a value need the binary search.
    """
    k = values.numel()
    span = float(values[-1] - values[0])
    if k < 2 or span <= 0 or not np.isfinite(span):
        return torch.searchsorted(values, queries)
    n_bins = bins_per_value * k
    scale = n_bins / span
    low = float(values[0])

    def bin_of(x: torch.Tensor) -> torch.Tensor:
        # -1: below every value, n_bins: at or above the top value; shifted to 0..n_bins+1
        return ((x.double() - low) * scale).floor_().clamp_(-1, n_bins).long() + 1

    per_bin = torch.bincount(bin_of(values), minlength=n_bins + 2)
    values_before = torch.cumsum(per_bin, 0) - per_bin
    query_bins = bin_of(queries)
    below = values_before[query_bins]
    shared = torch.nonzero(per_bin[query_bins] > 0).flatten()
    below[shared] = torch.searchsorted(values, queries[shared])
    return below


def _area_to_limit(x: torch.Tensor, y: torch.Tensor, limit: float) -> torch.Tensor:
    """Trapezoid area under (x, y) for x in [0, limit], interpolating y linearly at ``limit``."""
    limit_t = torch.tensor([limit], dtype=x.dtype, device=x.device)
    # points [0, cut) have x <= limit; x[-1] is 1 (every pixel above the lowest threshold)
    cut = int(torch.searchsorted(x, limit_t, right=True).item())
    area = torch.trapezoid(y[:cut], x[:cut])
    if cut < x.numel():
        x0, x1, y0, y1 = x[cut - 1], x[cut], y[cut - 1], y[cut]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area = area + (limit - x0) * (y0 + y_limit) / 2
    return area


def _check_pairs(maps: Sequence[torch.Tensor], masks: Sequence[np.ndarray]) -> None:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} anomaly maps for {len(masks)} masks")
    if not maps:
        raise DefectkitError("no anomaly maps to evaluate")
    for i, (m, k) in enumerate(zip(maps, masks, strict=True)):
        if tuple(m.shape) != tuple(k.shape):
            raise ValueError(f"map {i} has shape {tuple(m.shape)} but its mask {tuple(k.shape)}; resize maps first")


def resize_map(anomaly_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``anomaly_map`` (H×W float) resized bilinearly to ``size``; unchanged when it already fits.

    Maps are resized to the masks, never masks to maps: resizing a binary mask
    dilates or erodes the defects and changes every pixel figure. Shrinking
    uses antialiasing so a thin high response is averaged, not skipped.
    """
    if tuple(anomaly_map.shape) == tuple(size):
        return anomaly_map
    shrinking = anomaly_map.shape[0] > size[0] or anomaly_map.shape[1] > size[1]
    resized = F.interpolate(
        anomaly_map[None, None].float(), size=size, mode="bilinear", align_corners=False, antialias=shrinking
    )
    return resized[0, 0]


def prepare_maps(
    maps: Sequence[Any], masks: Sequence[Any], device: torch.device | str | None = None
) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """Maps as float tensors on ``device`` resized to their masks; masks as boolean arrays."""
    out_maps, out_masks = [], []
    for anomaly_map, mask in zip(maps, masks, strict=True):
        mask_np = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
        tensor = _as_tensor(anomaly_map, device).float()
        if tensor.ndim != 2:
            raise ValueError(f"an anomaly map must be H×W, got shape {tuple(tensor.shape)}")
        out_maps.append(resize_map(tensor, mask_np.shape))
        out_masks.append(mask_np)
    return out_maps, out_masks


def detection_metrics(
    scores: ArrayLike | torch.Tensor | None,
    labels: ArrayLike | torch.Tensor,
    maps: Sequence[Any] | torch.Tensor,
    masks: Sequence[Any] | torch.Tensor,
    fpr_limit: float = 0.3,
    device: torch.device | str | None = None,
    keys: Sequence[str] = DETECTION_KEYS,
) -> dict[str, float]:
    """The detection figures of :data:`DETECTION_KEYS` (or the subset ``keys``) for one test set.

    Args:
        scores: one anomaly score per image, or ``None`` for each map's maximum
            (taken before resizing, on the map as the detector produced it).
        labels: 1 for a defective image, 0 for a normal one.
        maps: one H×W float map per image (array or tensor); resized
            bilinearly to its mask when the sizes differ.
        masks: one boolean H×W ground-truth mask per image (all False for normal ones).
        fpr_limit: the FPR up to which PRO is integrated.
        device: where to compute (default: the maps' own device).
        keys: which figures to compute; work for the others is skipped.
    """
    unknown = set(keys) - set(DETECTION_KEYS)
    if unknown:
        raise ValueError(f"unknown detection figures {sorted(unknown)}; choose from {', '.join(DETECTION_KEYS)}")
    maps = list(maps)
    labels_t = _as_tensor(labels).flatten()
    if labels_t.numel() != len(maps):
        raise ValueError(f"{labels_t.numel()} image labels for {len(maps)} maps")
    out: dict[str, float] = {}
    if any(k.startswith("image_") for k in keys):
        if scores is None:
            scores = torch.stack([_as_tensor(m, device).float().max() for m in maps])
        image = ranking_metrics(_as_tensor(scores, device), labels_t, what="image AUROC")
        out.update({f"image_{name}": value for name, value in image.items()})
    if any(k.startswith("pixel_") for k in keys):
        map_list, mask_list = prepare_maps(maps, masks, device)
        if {"pixel_auroc", "pixel_ap", "pixel_f1max"} & set(keys):
            pixel_scores = torch.cat([m.flatten() for m in map_list])
            pixel_targets = torch.as_tensor(np.concatenate([k.ravel() for k in mask_list]), device=pixel_scores.device)
            pixel = ranking_metrics(pixel_scores, pixel_targets, what="pixel AUROC")
            out.update({f"pixel_{name}": value for name, value in pixel.items()})
        if "pixel_aupro" in keys:
            out["pixel_aupro"] = aupro(map_list, mask_list, fpr_limit)
    return {key: out[key] for key in DETECTION_KEYS if key in keys}
