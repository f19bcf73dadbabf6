"""Generation figures on hand-made cases; classification against scikit-learn; segmentation by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from defectkit_metrics import generation, tiny
from defectkit_metrics.classification import classification_metrics, segmentation_metrics
from defectkit_metrics.detection import UndefinedMetricError
from defectkit_metrics.extractors import ExtractorError, feature_extractor, lpips_distance

CPU = torch.device("cpu")
T = tiny.__name__


def images(seed: int, n: int = 6, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_difference():
    real = images(0, n=16)
    same = generation.fid(real, real, f"{T}:tiny_features", CPU)
    other = generation.fid(real, (real // 4), f"{T}:tiny_features", CPU)
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    assert other["fid"] > 0.01
    assert same["fid_extractor"] == f"{T}:tiny_features"


def test_kid_adapts_subset_size_to_small_sets():
    result = generation.kid(images(0, n=5), images(1, n=7), f"{T}:tiny_features", CPU, subsets=3)
    assert result["kid_subset_size"] == 5.0
    with pytest.raises(UndefinedMetricError, match="at least 2 real"):
        generation.kid(images(0, n=1), images(1, n=7), f"{T}:tiny_features", CPU)


def test_unknown_extractor_and_missing_inception_are_clear_errors():
    with pytest.raises(ExtractorError, match="unknown extractor 'resnet'"):
        feature_extractor("resnet", "fid")
    with pytest.raises(ExtractorError, match="cannot import"):
        feature_extractor("no_such_module:factory", "fid")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(ExtractorError, match="needs torch-fidelity"):
            feature_extractor("inception", "fid")


def test_ssim_and_edge_ssim_of_identical_images_are_one():
    batch = images(2, n=3).float() / 255
    assert torch.allclose(generation.ssim_distance(batch, batch), torch.ones(3), atol=1e-6)
    for edges in ("sobel", "canny"):
        assert torch.allclose(generation.edge_ssim_distance(edges)(batch, batch), torch.ones(3), atol=1e-6)


def test_sobel_edges_of_a_step():
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    edges = generation.sobel_edges(step)[0, 0]
    assert edges[:, 3].min() == pytest.approx(4 / generation.SOBEL_MAX)  # |gx| = 4 at the step
    assert edges[:, 0].max() == 0 and edges.max() <= 1


def test_lbp_identical_textures_and_different_textures():
    a = images(3, n=4)
    same = generation.lbp_similarity(a, ["x"] * 4, a, ["x"] * 4)
    assert same == {"lbp_intersection": pytest.approx(1.0), "lbp_chi2": pytest.approx(0.0)}
    flat = torch.full_like(a, 128)
    different = generation.lbp_similarity(flat, ["x"] * 4, a, ["x"] * 4)
    assert different["lbp_intersection"] < 0.5 and different["lbp_chi2"] > 0.3


def test_ic_lpips_by_hand_with_a_known_distance():
    # images are constant grey levels; distance = |difference of levels| / 255
    def distance(a, b):
        return (a.mean(dim=(1, 2, 3)) - b.mean(dim=(1, 2, 3))).abs()

    def grey(levels):
        return torch.stack([torch.full((3, 4, 4), v, dtype=torch.uint8) for v in levels])

    centres = grey([0, 200])
    fake = grey([10, 30, 190, 160, 100])  # clusters: {10, 30, 100} near 0 and {190, 160} near 200
    value = generation.ic_lpips(fake, ["d"] * 5, centres, ["d"] * 2, distance, CPU)
    cluster_a = np.mean([20, 90, 70]) / 255
    cluster_b = 30 / 255
    assert value == pytest.approx((cluster_a + cluster_b) / 2, abs=1e-6)
    with pytest.raises(UndefinedMetricError):
        generation.ic_lpips(grey([10, 190]), ["d"] * 2, centres, ["d"] * 2, distance, CPU)


def test_custom_lpips_is_zero_for_identical_images_and_symmetric():
    distance = lpips_distance(f"{T}:tiny_pyramid", CPU)
    a, b = images(4, n=2).float() / 255, images(5, n=2).float() / 255
    assert torch.allclose(distance(a, a), torch.zeros(2), atol=1e-6)
    assert torch.allclose(distance(a, b), distance(b, a), atol=1e-6)
    assert (distance(a, b) > 0).all()


def test_classification_matches_sklearn():
    rng = np.random.default_rng(0)
    classes = ["crazing", "inclusion", "patches", "scratches"]
    labels = [classes[i] for i in rng.integers(0, 4, 60)]
    predictions = [c if rng.random() < 0.7 else classes[rng.integers(0, 4)] for c in labels]
    result = classification_metrics(labels, predictions, classes)
    figures = result["figures"]
    assert figures["accuracy"] == pytest.approx(accuracy_score(labels, predictions), abs=1e-6)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, labels=classes, zero_division=0)
    for i, cls in enumerate(classes):
        assert figures[f"precision/{cls}"] == pytest.approx(precision[i], abs=1e-6)
        assert figures[f"recall/{cls}"] == pytest.approx(recall[i], abs=1e-6)
        assert figures[f"f1/{cls}"] == pytest.approx(f1[i], abs=1e-6)
    assert figures["f1_macro"] == pytest.approx(f1.mean(), abs=1e-6)
    assert result["confusion"] == confusion_matrix(labels, predictions, labels=classes).tolist()


def test_segmentation_iou_and_dice_by_hand():
    truth = [np.zeros((4, 4), bool), np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    pred = [np.zeros((4, 4), bool), np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    truth[0][0, 0:2] = True  # 2 pixels
    pred[0][0, 1:4] = True  # 3 pixels, 1 shared: IoU 1/4, Dice 2/5
    truth[1][2, 2] = pred[1][2, 2] = True  # perfect: IoU 1, Dice 1
    # image 3 is empty in both: left out of the per-image means
    figures = segmentation_metrics(pred, truth)
    assert figures["iou"] == pytest.approx(2 / 5)  # pooled: 2 shared of 5 in the union
    assert figures["dice"] == pytest.approx(2 * 2 / (4 + 3))  # 4 predicted and 3 true pixels
    assert figures["mean_iou"] == pytest.approx((1 / 4 + 1) / 2)
    assert figures["mean_dice"] == pytest.approx((2 / 5 + 1) / 2)
