"""How a plugin author tests a plugin with ``defectkit.testing`` (installed as a pytest plugin)."""

import numpy as np
import pytest
from defectkit_example import hooks
from defectkit_example.detector import read_scores
from PIL import Image
from pydantic import BaseModel

from defectkit import Component, hookimpl
from defectkit.data import Sample
from defectkit.testing import check_component, check_plugin_light, check_predictor, run_recipe_dict


def test_hooks_module_is_light():
    check_plugin_light("defectkit_example.hooks")


def test_component_contract():
    (component,) = hooks.defectkit_detectors()
    config = check_component(component)
    assert config.size == 64


class Squares:
    """Grey images; test images with a white square are defective."""

    def __init__(self, config: BaseModel | None) -> None:
        pass

    def samples(self, split):
        def load(defective):
            pixels = np.full((32, 32, 3), 120, np.uint8) + np.random.default_rng(0).integers(
                0, 8, (32, 32, 3), dtype=np.uint8
            )
            mask = np.zeros((32, 32), bool)
            if defective:
                pixels[8:14, 8:14] = 255
                mask[8:14, 8:14] = True
            return Image.fromarray(pixels), mask

        n = 6 if split == "train" else 4
        return [
            Sample(
                id=f"{split}/{i}",
                split=split,
                label=int(split == "test" and i % 2 == 1),
                defect_type="square" if split == "test" and i % 2 else "good",
                loader=lambda d=(split == "test" and i % 2 == 1): load(d),
            )
            for i in range(n)
        ]


class DataPlugin:
    @hookimpl
    def defectkit_datasets(self):
        return [Component(kind="dataset", name="squares", factory="test_example:Squares")]


def test_detector_in_a_recipe(register_plugin, defectkit_registry, tmp_path):
    if "example" not in defectkit_registry.plugins:  # running from a source checkout, not installed
        register_plugin(hooks, "example")
    register_plugin(DataPlugin(), "squares")
    recipe = {
        "version": 1,
        "name": "example",
        "data": {"format": "squares"},
        "steps": [{"detect": {"use": "pixel_zscore", "with": {"size": 16}}}],
    }
    run_dir = run_recipe_dict(recipe, tmp_path / "run")
    scores = read_scores(run_dir / "01_detect" / "scores.csv")
    defective = [v for k, v in scores.items() if k.startswith("square/")]
    normal = [v for k, v in scores.items() if k.startswith("good/")]
    assert min(defective) > max(normal)


    # the predictor (defectkit detect, defectkit serve) scores new images as the step scored its test split
    predictor = check_predictor(run_dir, "detect")
    image, _ = Squares(None).samples("test")[1].loader()
    [record] = predictor.predict([image], ["square.png"])
    assert record.score == pytest.approx(scores["square/1"], rel=1e-4) and record.anomaly_map.shape == (16, 16)
