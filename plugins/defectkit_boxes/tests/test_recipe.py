"""End to end through recipes: fcos_small trained from scratch on synthetic NEU-like steel, offline."""

import json

import pytest
import torch
from safetensors.torch import load_file

from defectkit import Component, hookimpl
from defectkit.errors import DataError, DefectkitError
from defectkit.generated import GeneratedWriter
from defectkit.testing import run_recipe_dict

DATA = {
    "format": "synthetic",
    "with": {"kind": "neu", "size": 64, "n_train": 12, "n_test": 4},
    "split": {"val_fraction": 0.15},
}
TRAIN = {
    "model": "fcos_small",
    "small": {"channels": [16, 32, 48, 64], "head_channels": 32},
    "image_size": 96,
    "epochs": 20,
    "batch_size": 12,
    "lr": 0.003,
    "warmup_steps": 5,
    "vflip": True,
    "cpu_threads": 1,
}


def recipe(steps, data=DATA):
    return {"version": 1, "name": "boxes", "seed": 0, "device": "cpu", "data": data, "steps": steps}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One training run shared by the tests that only read it: train, detect, box_map."""
    steps = [
        {"train": {"use": "torchvision_boxes", "with": TRAIN}},
        {"detect": {"use": "torchvision_boxes", "with": {"overlays": 4}}},
        {"evaluate": {"use": ["box_map"], "with": {"box_map": {"score_threshold": 0.3}}}},
    ]
    return run_recipe_dict(recipe(steps), tmp_path_factory.mktemp("boxes") / "run")


def test_train_detect_and_box_map_end_to_end(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    print("fcos_small, 20 epochs on 61 images:", metrics)
    train, detect, figures = metrics["train"], metrics["detect"], metrics["evaluate"]
    assert train["classes"] == 6 and train["train_images"] == 61 and 0.0 <= train["val_map50"] <= 1.0
    assert detect["images"] == 24
    assert {"map50", "map50_95", "precision", "recall"} <= set(figures)
    assert {
        f"ap50/{c}" for c in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
    } <= set(figures)
    assert 0.0 <= figures["map50_95"] <= figures["map50"] <= 1.0
    # held-out images the detector never saw: 0.36 observed (a random detector scores about 0.01)
    assert figures["map50"] > 0.15

    records = [
        json.loads(line)
        for line in (trained_run / "02_detect/box_predictions/detections.jsonl").read_text().splitlines()
    ]
    assert len(records) == 24 and records[0]["id"] == "test/crazing/crazing_13.jpg"
    assert records[0]["width"] == records[0]["height"] == 64
    assert all(len(r["boxes"]) == len(r["classes"]) == len(r["scores"]) for r in records)
    manifest = json.loads((trained_run / "02_detect/manifest.json").read_text())
    assert len(manifest["figures"]) == 4 and all(f["path"].endswith(".png") for f in manifest["figures"])
    checkpoint = trained_run / "01_train/checkpoint"
    assert json.loads((trained_run / "01_train/manifest.json").read_text())["artifacts"] == {
        "box_model": "01_train/checkpoint"
    }
    # the finished checkpoint keeps no optimizer state
    assert (checkpoint / "model.safetensors").is_file() and not (checkpoint / "training.pt").exists()


class RealImagesGenerator:
    """A generate step that writes real test images as its output: half as themselves, with their masks, and
    the pitted-surface ones a second time announced as scratches, which they do not show."""

    def __init__(self, config=None) -> None:
        pass

    def generate(self, ctx) -> None:
        test = ctx.samples("test")
        with GeneratedWriter(ctx.step_dir / "generated", object_class="steel") as out:
            for sample in test:
                if sample.defect_type in ("patches", "pitted_surface"):
                    out.add(sample.load_image(), sample.defect_type, {"seed": 0}, mask=sample.load_mask())
            for sample in test:
                if sample.defect_type == "pitted_surface":
                    out.add(sample.load_image(), "scratches", {"seed": 0})
        ctx.add_artifact("generated_images", out.root)


class _Plugin:
    @hookimpl
    def defectkit_generators(self):
        return [Component(kind="generator", name="real_as_generated", factory=f"{__name__}:RealImagesGenerator")]


def test_detection_and_classification_accuracy_of_images_with_and_without_the_defect(
    trained_run, register_plugin, tmp_path
):
    register_plugin(_Plugin(), "real-as-generated")
    options = {"model": str(trained_run / "01_train/checkpoint"), "score_threshold": 0.5, "overlays": 3}
    steps = [
        {"generate": {"use": "real_as_generated"}},
        {
            "evaluate": {
                "use": ["detection_accuracy", "classification_accuracy_score"],
                "with": {
                    "detection_accuracy": options,
                    "classification_accuracy_score": {"image_size": 32, "steps": 150},
                },
            }
        },
    ]
    run_dir = run_recipe_dict(recipe(steps), tmp_path / "run")
    figures = json.loads((run_dir / "metrics.json").read_text())["evaluate"]
    print("detection accuracy:", figures)
    assert figures["detection_accuracy_images"] == 12
    assert {"detection_accuracy/patches", "detection_accuracy/pitted_surface", "detection_accuracy/scratches"} <= set(
        figures
    )
    # the images that do show their class are found more often than those announced as scratches
    shown = (figures["detection_accuracy/patches"] + figures["detection_accuracy/pitted_surface"]) / 2
    assert shown > figures["detection_accuracy/scratches"]
    assert figures["detection_accuracy"] == pytest.approx(
        (2 * 4 * shown + 4 * figures["detection_accuracy/scratches"]) / 12
    )
    # masks only for the first eight: the overlap is measured on those
    assert 0.0 <= figures["detection_mask_hit"] <= 1.0
    manifest = json.loads((run_dir / "02_evaluate/manifest.json").read_text())
    assert len(manifest["figures"]) == 3
    # the classifier (trained on the 72 real training images) labels the same images
    assert figures["classification_accuracy_score_images"] == 12
    assert figures["classification_accuracy_score/scratches"] < figures["classification_accuracy_score/patches"]
    assert 0.0 <= figures["classification_real_accuracy"] <= 1.0


def test_resume_continues_from_the_last_epoch_and_ends_with_the_same_weights(tmp_path, monkeypatch):
    from defectkit_boxes import train as box_train

    steps = [{"train": {"use": "torchvision_boxes", "with": {**TRAIN, "epochs": 3, "val_split": None}}}]
    whole = run_recipe_dict(recipe(steps), tmp_path / "whole")

    save = box_train.BoxTrainer._save

    def interrupted(ctx, path, model, meta, training):
        save(ctx, path, model, meta, training)
        if training is not None and training["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(box_train.BoxTrainer, "_save", staticmethod(interrupted))
    with pytest.raises(DefectkitError, match="--resume"):
        run_recipe_dict(recipe(steps), tmp_path / "cut")
    monkeypatch.setattr(box_train.BoxTrainer, "_save", staticmethod(save))
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    resumed = run_recipe(
        validate_recipe(recipe(steps), get_registry(), source="<test>"), out=tmp_path / "cut", resume=True
    )
    assert "resumed after epoch 2" in (resumed / "run.log").read_text()
    a, b = (load_file(str(run / "01_train/checkpoint/model.safetensors")) for run in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_user_mistakes_are_one_line_errors(tmp_path):
    mvtec = {
        "format": "synthetic",
        "category": "carpet",
        "with": {"kind": "mvtec", "size": 32, "n_train": 2, "n_test": 1},
    }
    with pytest.raises(DataError, match="no sample has boxes.*neu-det"):
        run_recipe_dict(recipe([{"train": {"use": "torchvision_boxes", "with": TRAIN}}], mvtec), tmp_path / "a")
    with pytest.raises(
        DefectkitError,
        match="not a torchvision box detector defectkit builds; choose fcos_small or one of fasterrcnn_mobilenet",
    ):
        run_recipe_dict(
            recipe([{"train": {"use": "torchvision_boxes", "with": {**TRAIN, "model": "yolov8n"}}}]), tmp_path / "b"
        )
    with pytest.raises(DefectkitError, match="has no weights 'IMAGENET'.*COCO_V1"):
        run_recipe_dict(
            recipe(
                [
                    {
                        "train": {
                            "use": "torchvision_boxes",
                            "with": {**TRAIN, "model": "fcos_resnet50_fpn", "weights": "IMAGENET"},
                        }
                    }
                ]
            ),
            tmp_path / "c",
        )
    with pytest.raises(DefectkitError, match="not a box model folder"):
        run_recipe_dict(
            recipe([{"detect": {"use": "torchvision_boxes", "with": {"model": str(tmp_path)}}}]), tmp_path / "d"
        )


def test_the_tiny_recipe_is_valid_and_wires_the_real_detector_to_the_generated_images():
    from pathlib import Path

    from defectkit.plugins import get_registry
    from defectkit.recipe import load_recipe

    validated = load_recipe(Path(__file__).resolve().parents[3] / "recipes/neudet_detect_tiny.yaml", get_registry())
    steps = validated.resolved["steps"]
    assert [next(iter(s)) for s in steps] == ["train", "detect", "evaluate", "train", "generate", "evaluate", "report"]
    assert steps[0]["train"]["with"]["model"] == "fcos_small" and steps[2]["evaluate"]["use"] == ["box_map"]
    assert steps[5]["evaluate"]["use"] == ["detection_accuracy", "classification_accuracy_score"]
    assert steps[5]["evaluate"]["inputs"] == {"box_model": "detector"}
