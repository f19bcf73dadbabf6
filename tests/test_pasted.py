"""Synthetic defects pasted into good images, and the numpy AUROC the validation uses."""

import numpy as np
import pytest

from defectkit.data.pasted import KINDS, paste_defect, validation_set
from defectkit.stats import auroc


def _texture(seed=0, size=64):
    rng = np.random.default_rng(seed)
    return (rng.random((size, size, 3)) * 120 + 60).astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_the_image_where_its_mask_is(kind):
    image, donor = _texture(0), _texture(1)
    out, mask = paste_defect(image, np.random.default_rng(3), kind, donor)
    assert out.shape == image.shape and out.dtype == np.uint8 and mask.dtype == bool
    assert 0 < mask.mean() < 0.3
    changed = np.abs(out.astype(int) - image.astype(int)).max(axis=2) > 0
    assert changed[mask].mean() > 0.5  # the defect is where the mask says
    grown = np.zeros_like(mask)
    rows, cols = np.nonzero(mask)
    grown[max(rows.min() - 4, 0) : rows.max() + 5, max(cols.min() - 4, 0) : cols.max() + 5] = True
    assert not changed[~grown].any()  # nothing changes away from the defect


def test_the_validation_set_is_seeded_half_good_half_defective():
    images = np.stack([_texture(i) for i in range(4)])
    a_images, a_masks, labels = validation_set(images, seed=5)
    b_images, b_masks, _ = validation_set(images, seed=5)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_masks, b_masks)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(a_images[:4], images) and not a_masks[:4].any() and all(m.any() for m in a_masks[4:])
    with pytest.raises(ValueError, match="unknown kind"):
        paste_defect(images[0], np.random.default_rng(0), "smudge")


def test_auroc_is_scikit_learns_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + labels * 0.3, 1)  # many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_choose_threshold_is_scikit_learns_best_f1_in_numpy():
    from sklearn.metrics import precision_recall_curve

    from defectkit.stats import choose_threshold

    rng = np.random.default_rng(1)
    for _ in range(100):
        labels = rng.integers(0, 2, 40)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(40) + labels * rng.random(), 1)  # ties at one decimal
        precision, recall, thresholds = precision_recall_curve(labels, scores)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1[:-1]))
        chosen = choose_threshold(labels.tolist(), scores.tolist(), 99)
        assert chosen["threshold"] == thresholds[best] and chosen["f1"] == pytest.approx(f1[best])
    normal = choose_threshold([0, 0, 0], [1.0, 2.0, 3.0], 50)
    assert normal == {"threshold": 2.0, "method": "percentile_50_of_normal"}
