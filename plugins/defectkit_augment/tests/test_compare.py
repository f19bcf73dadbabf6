"""augment_compare: the paired real / real + generated comparison, end to end and its pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import BaseModel
from scipy import stats

from defectkit import Component, hookimpl
from defectkit.errors import DataError
from defectkit.generated import GeneratedWriter
from defectkit.stats import t_interval
from defectkit.testing import check_component, run_recipe_dict
from defectkit_augment.compare import summarise


class CopyConfig(BaseModel):
    only: list[str] | None = None  # write only these defect types
    rename: dict[str, str] = {}


class FlippedCopies:
    """A stand-in generator: vertically flipped copies of the real training images, in the generated layout."""

    def __init__(self, config: CopyConfig) -> None:
        self.config = config

    def generate(self, ctx) -> None:
        with GeneratedWriter(ctx.step_dir / "generated") as out:
            for i, sample in enumerate(ctx.samples("train")):
                if self.config.only is None or sample.defect_type in self.config.only:
                    flipped = sample.load_image().transpose(1)  # PIL's FLIP_TOP_BOTTOM
                    out.add(flipped, self.config.rename.get(sample.defect_type, sample.defect_type), {"seed": i})
        ctx.add_artifact("generated_images", out.root)


class CopyPlugin:
    @hookimpl
    def defectkit_generators(self):
        return [
            Component(
                kind="generator",
                name="flipped_copies",
                factory=f"{__name__}:FlippedCopies",
                config=f"{__name__}:CopyConfig",
                summary="test",
            )
        ]


def _recipe(generate: dict | None = None, **options) -> dict:
    return {
        "version": 1,
        "name": "augment-test",
        "seed": 0,
        "device": "cpu",
        "data": {
            "format": "synthetic",
            "category": "steel",
            "with": {"kind": "neu", "size": 32, "n_train": 4, "n_test": 3},
        },
        "steps": [
            {"generate": {"use": "flipped_copies", "with": generate or {}}},
            {
                "train": {
                    "use": "augment_compare",
                    "with": {"image_size": 32, "steps": 4, "batch_size": 16, "seeds": [0, 1], **options},
                }
            },
        ],
    }


@pytest.fixture(autouse=True)
def copies(register_plugin):
    register_plugin(CopyPlugin(), "copies")


def test_both_arms_per_seed_and_the_paired_gain(tmp_path):
    run_dir = run_recipe_dict(_recipe(real_per_class=2), tmp_path / "run")
    step = run_dir / "02_train"
    comparison = json.loads((step / "comparison.json").read_text())
    runs = comparison["runs"]
    assert [(r["seed"], r["arm"]) for r in runs] == [(0, "real"), (0, "augmented"), (1, "real"), (1, "augmented")]
    summary = comparison["summary"]
    assert len(summary["classes"]) == 6 and summary["real_train_images"] == 12  # 2 per class, capped
    assert summary["generated_images"] == 24 and summary["eval_images"] == 18
    assert [r["train_images"] for r in runs[:2]] == [12, 36]
    gains = [runs[1]["accuracy"] - runs[0]["accuracy"], runs[3]["accuracy"] - runs[2]["accuracy"]]
    assert summary["gain/accuracy_mean"] == pytest.approx(np.mean(gains))
    assert summary["gain/accuracy_ci95_low"] <= summary["gain/accuracy_mean"] <= summary["gain/accuracy_ci95_high"]
    metrics = json.loads((run_dir / "metrics.json").read_text())["train"]
    assert metrics["gain/f1_macro_mean"] == pytest.approx(summary["gain/f1_macro_mean"])
    assert (step / "comparison.png").stat().st_size > 5000
    manifest = json.loads((step / "manifest.json").read_text())
    assert manifest["artifacts"]["comparison"].endswith("comparison.json")
    assert manifest["figures"][0]["path"].endswith("comparison.png")


def test_t_interval_matches_the_textbook_formula():
    low, high = t_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))


def test_summary_of_a_constant_gain_has_zero_spread():
    runs = [
        {"seed": s, "arm": a, "accuracy": base + (0.1 if a == "augmented" else 0), "f1_macro": base}
        for s, base in ((0, 0.5), (1, 0.7))
        for a in ("real", "augmented")
    ]
    summary = summarise(runs, [0, 1])
    assert summary["gain/accuracy_mean"] == pytest.approx(0.1) and summary["gain/accuracy_std"] == pytest.approx(0.0)
    assert summary["gain/f1_macro_mean"] == 0.0
    assert summary["real/accuracy_mean"] == pytest.approx(0.6)


def test_generated_classes_the_real_data_lacks_are_a_clear_error(tmp_path):
    recipe = _recipe({"only": ["crazing"], "rename": {"crazing": "dents"}})
    with pytest.raises(DataError, match="generated images of dents, which the real training split"):
        run_recipe_dict(recipe, tmp_path / "run")


def test_a_split_without_defect_classes_is_a_clear_error(tmp_path):
    recipe = _recipe()
    recipe["data"] = {
        "format": "synthetic",
        "category": "carpet",
        "with": {"kind": "mvtec", "size": 32, "n_train": 3, "n_test": 1},
    }
    with pytest.raises(DataError, match="split 'train' has 0 labelled class"):
        run_recipe_dict(recipe, tmp_path / "run")


def test_options_are_checked():
    from defectkit.plugins import get_registry

    component = get_registry().get("trainer", "augment_compare")
    check_component(component, {"steps": 1})
    with pytest.raises(Exception, match="seeds"):
        component.build_config({"seeds": [0]})


def test_an_interrupted_comparison_resumes_without_retraining_finished_arms(tmp_path, monkeypatch):
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import RunInterrupted, run_recipe
    from defectkit_augment.compare import AugmentCompare

    real_fit, calls = AugmentCompare._fit_and_score, []

    def counting_fit(self, ctx, *args):
        seed, arm = args[-2:]
        calls.append((seed, arm))
        if len(calls) == 3 and not ctx.resume:
            raise KeyboardInterrupt  # Ctrl-C during seed 1's real arm
        return real_fit(self, ctx, *args)

    monkeypatch.setattr(AugmentCompare, "_fit_and_score", counting_fit)
    validated = validate_recipe(_recipe(steps=2), get_registry(), source="<test>")
    with pytest.raises(RunInterrupted):
        run_recipe(validated, out=tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "02_train" / "results").iterdir()) == [
        "seed0_augmented.json",
        "seed0_real.json",
    ]
    run_recipe(validated, out=tmp_path / "run", resume=True)
    assert calls == [(0, "real"), (0, "augmented"), (1, "real"), (1, "real"), (1, "augmented")]
    runs = json.loads((tmp_path / "run" / "02_train" / "comparison.json").read_text())["runs"]
    assert len(runs) == 4
