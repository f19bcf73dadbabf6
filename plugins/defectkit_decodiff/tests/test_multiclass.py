"""One model for several categories: class conditioning, prefixed outputs, the category classifier."""

import json

import torch

from defectkit.data.configs import SyntheticConfig
from defectkit.data.synthetic import synthetic_splits
from defectkit.testing import run_recipe_dict
from defectkit_decodiff.model import load_checkpoint, load_images, to_model_range
from defectkit_decodiff.tests.test_recipe import full, recipe


def test_two_categories_one_model_and_a_classifier(registered, tmp_path):
    steps = full(train={"classifier_steps": 60})
    run_dir = run_recipe_dict(recipe(steps, category=["carpet", "bottle"], n_test=1), tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["classes"] == 2
    assert "carpet/image_auroc" in metrics["evaluate"] and "bottle/pixel_auroc" in metrics["evaluate"]
    maps = run_dir / "02_detect" / "anomaly_maps"
    assert (maps / "carpet" / "good" / "000.npy").is_file() and (maps / "bottle" / "good" / "000.npy").is_file()

    checkpoint = load_checkpoint(run_dir / "01_train" / "checkpoint")
    assert checkpoint.classes == ["bottle", "carpet"] and checkpoint.classifier is not None
    test = synthetic_splits(SyntheticConfig(kind="mvtec", category=["carpet", "bottle"], size=48, n_test=3))["test"]
    images = to_model_range(load_images(test, 40, 32))
    with torch.no_grad():
        predicted = checkpoint.classifier(images).argmax(dim=1).tolist()
    truth = [checkpoint.classes.index(s.object_class) for s in test]
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(test)
    print(f"category classifier accuracy on {len(test)} held-out test images: {accuracy:.3f}")
    assert accuracy >= 0.9
