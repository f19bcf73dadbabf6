"""Detection figures against scikit-learn, hand-computed AUPRO cases and a slow exact reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from defectkit_metrics.detection import (
    DETECTION_KEYS,
    UndefinedMetricError,
    aupro,
    detection_metrics,
    label_regions,
    prepare_maps,
    ranking_metrics,
)


def sklearn_figures(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    precision, recall, _ = precision_recall_curve(targets, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {
        "auroc": roc_auc_score(targets, scores),
        "ap": average_precision_score(targets, scores),
        "f1max": float(f1.max()),
    }


def reference_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """Exact AUPRO the slow way: one pass per distinct threshold, regions by ndimage.label (8-connected)."""
    regions = []
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, labels == r) for r in range(1, count + 1)]
    negatives = ~masks
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fprs.append((predicted & negatives).sum() / negatives.sum())
        pros.append(np.mean([predicted[i][region].mean() for i, region in regions]))
    fprs, pros = np.asarray(fprs), np.asarray(pros)
    keep = fprs <= limit
    x, y = list(fprs[keep]), list(pros[keep])
    if x[-1] < limit:
        j = int(np.argmax(fprs > limit))
        y.append(pros[j - 1] + (pros[j] - pros[j - 1]) * (limit - fprs[j - 1]) / (fprs[j] - fprs[j - 1]))
        x.append(limit)
    area = sum((x[k] - x[k - 1]) * (y[k] + y[k - 1]) / 2 for k in range(1, len(x)))
    return area / limit


def random_set(seed: int, n: int = 12, size: int = 24, round_to: int | None = None):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n // 2, n):
        for _ in range(1 + i % 3):
            y, x = rng.integers(0, size - 5, size=2)
            h, w = rng.integers(1, 6, size=2)
            masks[i, y : y + h, x : x + w] = True
    maps = rng.random((n, size, size)) + masks * rng.random() * 0.8
    if round_to is not None:
        maps = np.round(maps, round_to)
    labels = masks.reshape(n, -1).any(axis=1).astype(int)
    return maps.astype(np.float32), masks, labels


@pytest.mark.parametrize("round_to", [None, 1])
def test_ranking_matches_sklearn_with_and_without_ties(round_to):
    rng = np.random.default_rng(0)
    targets = rng.random(3000) < 0.25
    scores = rng.normal(size=3000) + targets * 0.8
    if round_to is not None:
        scores = np.round(scores, round_to)  # heavy ties: about 60 distinct values
    ours = ranking_metrics(scores, targets)
    for key, value in sklearn_figures(scores, targets).items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize(
    "scores, auroc",
    [
        ([0.1, 0.2, 0.8, 0.9], 1.0),  # perfect
        ([0.9, 0.8, 0.2, 0.1], 0.0),  # inverted
        ([0.5, 0.5, 0.5, 0.5], 0.5),  # constant: one threshold
    ],
)
def test_perfect_inverted_constant_scores(scores, auroc):
    targets = np.array([0, 0, 1, 1])
    ours = ranking_metrics(np.array(scores), targets)
    assert ours["auroc"] == pytest.approx(auroc, abs=1e-12)
    reference = sklearn_figures(np.array(scores), targets)
    assert ours["ap"] == pytest.approx(reference["ap"], abs=1e-12)
    assert ours["f1max"] == pytest.approx(reference["f1max"], abs=1e-12)


def test_ap_is_stepwise_not_trapezoid():
    # positives at ranks 1 and 3: AP = (1/2)(1/1) + (1/2)(2/3) = 5/6; a trapezoid would give less
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    targets = np.array([1, 0, 1, 0])
    assert ranking_metrics(scores, targets)["ap"] == pytest.approx(5 / 6, abs=1e-12)


def test_undefined_auroc_is_an_error_not_nan():
    with pytest.raises(UndefinedMetricError, match="all 3 examples are normal"):
        ranking_metrics(np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]), what="image AUROC")
    with pytest.raises(UndefinedMetricError, match="all 2 examples are defective"):
        ranking_metrics(np.array([0.1, 0.2]), np.array([1, 1]), what="image AUROC")


def test_nan_scores_are_rejected():
    with pytest.raises(Exception, match="NaN"):
        ranking_metrics(np.array([0.1, np.nan]), np.array([0, 1]))


# -- AUPRO ------------------------------------------------------------------------------------


def test_aupro_perfect_inverted_constant():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[1, 2:4, 2:5] = True
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro((~masks).astype(np.float32), masks) == pytest.approx(0.0, abs=1e-12)
    # constant map: the curve is the diagonal, area 0.3^2/2 = 0.045, / 0.3 = 0.15
    assert aupro(np.full((2, 8, 8), 0.5, dtype=np.float32), masks) == pytest.approx(0.15, abs=1e-12)


def test_aupro_averages_regions_not_pixels():
    # one single-pixel region found at t=1, one 3-pixel region never above background
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = True
    mask[3, 1:4] = True
    anomaly_map = np.zeros((4, 4), dtype=np.float32)
    anomaly_map[0, 0] = 1.0
    anomaly_map[1, 1:4] = 0.5  # 3 of 12 normal pixels: FPR 0.25 at t=0.5
    # curve (0,0) (0,.5) (.25,.5) (1,1); PRO at 0.3 = .5 + .5 * .05 / .75
    pro_at_limit = 0.5 + 0.5 * 0.05 / 0.75
    expected = (0.25 * 0.5 + 0.05 * (0.5 + pro_at_limit) / 2) / 0.3
    assert aupro(anomaly_map[None], mask[None]) == pytest.approx(expected, abs=1e-12)
    assert reference_aupro(anomaly_map[None], mask[None]) == pytest.approx(expected, abs=1e-12)


def test_regions_are_eight_connected():
    # (0,0) touches (1,1) diagonally: one region of 3 pixels (4-connectivity would make two)
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[1, 2] = True
    anomaly_map = np.zeros((4, 4), dtype=np.float32)
    anomaly_map[0, 0] = 1.0
    _, _, count = label_regions([mask])
    assert count == 1
    # curve (0,0) (0,1/3) (1,1): PRO at 0.3 = 1/3 + 2/3 * 0.3
    expected = (1 / 3 + (1 / 3 + 0.2)) / 2
    assert aupro(anomaly_map[None], mask[None]) == pytest.approx(expected, abs=1e-12)


def test_touching_and_separate_regions_count():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0:2, 0:2] = True
    mask[2:4, 2:4] = True  # touches the first at a corner: same region
    mask[7, 7] = True  # single pixel
    mask[0:3, 8] = True
    positions, ids, count = label_regions([mask, mask[::-1]])
    assert count == 6
    assert len(positions) == len(ids) == 2 * mask.sum()
    assert set(ids[positions < 100]) == {0, 1, 2} and positions.max() >= 100


@pytest.mark.parametrize("seed, round_to", [(0, None), (1, 2), (2, 1)])
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_matches_slow_exact_reference(seed, round_to, limit):
    maps, masks, _ = random_set(seed, round_to=round_to)
    assert aupro(maps, masks, limit) == pytest.approx(reference_aupro(maps, masks, limit), abs=1e-9)


def test_aupro_undefined_without_regions():
    with pytest.raises(UndefinedMetricError, match="no ground-truth mask"):
        aupro(np.zeros((2, 4, 4), dtype=np.float32), np.zeros((2, 4, 4), dtype=bool))


# -- everything together ------------------------------------------------------------------------


def test_detection_metrics_against_sklearn_and_reference():
    maps, masks, labels = random_set(5)
    figures = detection_metrics(None, labels, maps, masks)
    assert list(figures) == list(DETECTION_KEYS)
    image = sklearn_figures(maps.reshape(len(maps), -1).max(axis=1), labels)
    pixel = sklearn_figures(maps.ravel(), masks.ravel())
    for key in ("auroc", "ap", "f1max"):
        assert figures[f"image_{key}"] == pytest.approx(image[key], abs=1e-6)
        assert figures[f"pixel_{key}"] == pytest.approx(pixel[key], abs=1e-6)
    assert figures["pixel_aupro"] == pytest.approx(reference_aupro(maps, masks), abs=1e-3)
    assert 0.0 <= figures["pixel_aupro"] <= 1.0
    assert detection_metrics(None, labels, maps, masks, keys=["pixel_aupro"]) == {"pixel_aupro": figures["pixel_aupro"]}


def test_maps_are_resized_to_masks_never_masks_to_maps():
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16), dtype=bool)
    mask[5, 5] = True  # a single pixel must stay a single pixel
    small = rng.random((8, 8)).astype(np.float32)
    maps, masks = prepare_maps([small], [mask])
    assert masks[0].sum() == 1 and masks[0].shape == (16, 16)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(small)[None, None], size=(16, 16), mode="bilinear", align_corners=False
    )[0, 0]
    assert torch.allclose(maps[0], expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    maps, masks, labels = random_set(3)
    cpu = detection_metrics(None, labels, maps, masks)
    gpu = detection_metrics(None, labels, torch.from_numpy(maps).cuda(), masks)
    for key in DETECTION_KEYS:
        assert gpu[key] == pytest.approx(cpu[key], abs=1e-6)


def test_binned_count_below_equals_searchsorted():
    from defectkit_metrics.detection import _count_below

    rng = np.random.default_rng(0)
    values = torch.unique(torch.from_numpy(rng.random(500).astype(np.float32)))
    queries = torch.from_numpy(rng.uniform(-0.5, 1.5, 20000).astype(np.float32))
    queries[:500] = values  # exact ties, including the lowest and the highest value
    queries[500:510] = torch.nextafter(values[:10], torch.tensor(2.0))  # just above a value
    assert torch.equal(_count_below(values, queries), torch.searchsorted(values, queries))
