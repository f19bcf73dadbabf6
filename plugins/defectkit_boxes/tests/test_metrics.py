"""Box metrics against a case computed by hand (COCO's 101-point interpolated AP)."""

import numpy as np
import pytest

from defectkit.errors import DataError
from defectkit_boxes.metrics import _overlaps, box_metrics, precision_recall

A = np.array


def _case():
    """Two images, classes a and b.

    a: two true boxes; found at 0.9 (exact), 0.8 (nowhere near a true box), 0.7 (exact). Ranked, the
    precision/recall points are (1, 1/2), (1/2, 1/2), (2/3, 1): the interpolated precision is 1 up to
    recall 0.5 (51 of COCO's 101 recall points) and 2/3 beyond (50 points): AP = (51 + 50 * 2/3) / 101
    at every IoU threshold.
    b: one true box [0, 0, 10, 10], found once at 0.9 as [0, 0, 10, 6.2]: IoU 0.62, a hit at the IoU
    thresholds 0.50, 0.55 and 0.60, a miss at the seven from 0.65 on: AP50 = 1, AP50:95 = 3/10.
    """
    truths = [
        (A([[0, 0, 10, 10]], np.float32), A([0])),
        (A([[20, 20, 40, 40], [0, 0, 10, 10]], np.float32), A([0, 1])),
    ]
    predictions = [
        {
            "boxes": A([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32),
            "labels": A([0, 0]),
            "scores": A([0.9, 0.8], np.float32),
        },
        {
            "boxes": A([[20, 20, 40, 40], [0, 0, 10, 6.2]], np.float32),
            "labels": A([0, 1]),
            "scores": A([0.7, 0.9], np.float32),
        },
    ]
    return predictions, truths


def test_map_matches_the_hand_computed_case():
    predictions, truths = _case()
    figures = box_metrics(predictions, truths, ["a", "b"], score_threshold=0.75)
    ap_a = (51 + 50 * 2 / 3) / 101
    assert figures["ap50/a"] == pytest.approx(ap_a, abs=1e-5)
    assert figures["ap50/b"] == pytest.approx(1.0, abs=1e-6)
    assert figures["map50"] == pytest.approx((ap_a + 1.0) / 2, abs=1e-5)
    assert figures["map50_95"] == pytest.approx((ap_a + 0.3) / 2, abs=1e-5)
    # at 0.75: a's 0.9 (hit) and 0.8 (miss), b's 0.9 (hit at IoU 0.62 >= 0.5); three true boxes
    assert (figures["true_positives"], figures["false_positives"], figures["ground_truth_boxes"]) == (2, 1, 3)
    assert figures["precision"] == pytest.approx(2 / 3) and figures["recall"] == pytest.approx(2 / 3)


def test_a_wrong_class_is_a_miss_and_a_class_without_truth_gets_no_ap():
    truths = [(A([[0, 0, 10, 10]], np.float32), A([0]))]
    wrong = [{"boxes": A([[0, 0, 10, 10]], np.float32), "labels": A([1]), "scores": A([0.9], np.float32)}]
    figures = box_metrics(wrong, truths, ["a", "b"])
    assert figures["map50"] == 0.0 and figures["ap50/a"] == 0.0 and "ap50/b" not in figures
    assert (figures["precision"], figures["recall"]) == (0.0, 0.0)


def test_each_true_box_matches_once_and_the_iou_threshold_counts():
    truths = [(A([[0, 0, 10, 10]], np.float32), A([0]))]
    twice = {
        "boxes": A([[0, 0, 10, 10], [0, 0, 10, 9]], np.float32),
        "labels": A([0, 0]),
        "scores": A([0.9, 0.8], np.float32),
    }
    assert precision_recall([twice], truths, 0.5, 0.5)[:2] == (0.5, 1.0)
    assert precision_recall([twice], truths, 0.5, 0.95)[:2] == (0.5, 1.0)  # the exact box still hits
    half = {"boxes": A([[0, 0, 10, 5]], np.float32), "labels": A([0]), "scores": A([0.9], np.float32)}
    assert precision_recall([half], truths, 0.5, 0.5)[:2] == (1.0, 1.0)  # IoU exactly 0.5 counts, as COCO's
    assert precision_recall([half], truths, 0.5, 0.51)[:2] == (0.0, 0.0)
    assert precision_recall([half], truths, 0.95, 0.5)[:2] == (0.0, 0.0)  # below the confidence threshold


def test_no_true_box_at_all_is_an_error_not_a_figure():
    empty = [(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))]
    found = [{"boxes": A([[0, 0, 4, 4]], np.float32), "labels": A([0]), "scores": A([0.9], np.float32)}]
    with pytest.raises(DataError, match="no image has a ground-truth box"):
        box_metrics(found, empty, ["a"])


def test_box_mask_overlap():
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    assert _overlaps(A([4.2, 4.2, 5.1, 5.1]), mask)
    assert not _overlaps(A([8.0, 8.0, 12.0, 12.0]), mask)
    assert not _overlaps(A([30.0, 30.0, 40.0, 40.0]), mask)
