"""End to end through recipes: train -> detect -> evaluate [classification, segmentation] on synthetic NEU-like steel."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from defectkit.errors import DefectkitError
from defectkit.testing import check_predictor, run_recipe_dict
from defectkit_dinov3 import hooks
from defectkit_dinov3.tests.tiny import tiny_train_options

torch.set_num_threads(1)
NEU = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture
def registered(register_plugin, defectkit_registry, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "dinov3" not in defectkit_registry.plugins:  # a source checkout that was not pip-installed
        register_plugin(hooks, "dinov3")


def recipe(steps: list, n_train: int = 3, n_test: int = 2) -> dict:
    return {
        "version": 1,
        "name": "dinov3",
        "device": "cpu",
        "data": {"format": "synthetic", "with": {"kind": "neu", "size": 32, "n_train": n_train, "n_test": n_test}},
        "steps": steps,
    }


def test_train_predict_evaluate(registered, tmp_path):
    steps = [
        {"train": {"use": "dinov3_multitask", "with": tiny_train_options(onnx=True)}},
        {"detect": {"use": "dinov3_multitask", "with": {"visualizations": 3, "figures": 2}}},
        {"evaluate": {"use": ["classification", "segmentation"]}},
    ]
    run_dir = run_recipe_dict(recipe(steps), tmp_path / "run")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["epochs"] == 2 and metrics["train"]["train_images"] == 18
    assert {"accuracy", "f1_macro", "iou", "dice", "mean_iou"} <= set(metrics["evaluate"])
    assert metrics["evaluate"]["accuracy"] == pytest.approx(metrics["detect"]["accuracy"], abs=1e-4)

    checkpoint = run_dir / "01_train" / "checkpoint"
    assert {p.name for p in checkpoint.iterdir()} == {"model.safetensors", "model.json", "training.pt", "model.onnx"}
    assert json.loads((checkpoint / "model.json").read_text())["classes"] == NEU

    detect = run_dir / "02_detect"
    manifest = json.loads((detect / "manifest.json").read_text())
    assert manifest["artifacts"] == {"predictions": "02_detect/predictions.csv"}
    with open(detect / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and list(rows[0])[:4] == ["id", "label", "prediction", "defect_probability"]
    assert {r["label"] for r in rows} == set(NEU) and {f"p_{c}" for c in NEU} <= set(rows[0])
    assert all(abs(sum(float(r[f"p_{c}"]) for c in NEU) - 1) < 1e-4 for r in rows)
    mask = np.asarray(Image.open(detect / rows[0]["mask"]))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
    assert len(list((detect / "visualizations").glob("*.png"))) == 3 and len(manifest["figures"]) == 2
    results = json.loads((detect / "results.json").read_text())
    assert results["images"] == 12 and results["results"][0]["id"] == rows[0]["id"]

    # new images through the predictor (defectkit detect, serve): class, probabilities, mask, attention map
    predictor = check_predictor(run_dir, "detect")
    record = predictor.predict([Image.new("RGB", (40, 40), (90, 90, 90))], ["grey.png"])[0]
    assert record.predicted_class in NEU and record.mask.shape == (32, 32) and 0 <= record.score <= 1


def test_resume_continues_after_the_last_finished_epoch(registered, tmp_path):
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe

    steps = [{"train": {"use": "dinov3_multitask", "with": tiny_train_options()}}]
    run_dir = run_recipe_dict(recipe(steps), tmp_path / "run")
    state_file = run_dir / "01_train" / "checkpoint" / "training.pt"
    state = torch.load(state_file, weights_only=True)
    assert (state["epoch"], state["stage"]) == (2, 1)

    # make it look interrupted after epoch 1 (the end of the frozen stage): only epoch 2 is trained again
    torch.save({**state, "epoch": 1, "stage": 0}, state_file)
    (run_dir / "01_train" / "manifest.json").unlink()
    run_recipe(validate_recipe(recipe(steps), get_registry(), source="<test>"), out=run_dir, resume=True)
    losses = [
        json.loads(line)["step"]
        for line in (run_dir / "scalars.jsonl").read_text().splitlines()
        if json.loads(line)["tag"] == "train/loss"
    ]
    assert losses == [0, 1, 1]
    assert torch.load(state_file, weights_only=True)["epoch"] == 2


def test_predict_files_on_a_folder(registered, tmp_path):
    from defectkit_dinov3.predict import predict_files

    run_dir = run_recipe_dict(
        recipe([{"train": {"use": "dinov3_multitask", "with": tiny_train_options()}}], n_train=1), tmp_path / "run"
    )
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    summary = predict_files(run_dir / "01_train" / "checkpoint", [folder], tmp_path / "out")
    assert summary["images"] == 3 and summary["accuracy"] is None
    assert len(list((tmp_path / "out" / "visualizations").glob("*.png"))) == 3
    assert (tmp_path / "out" / "predictions.csv").read_text().count("\n") == 4


def test_an_unknown_backbone_option_names_the_key(registered, tmp_path):
    options = tiny_train_options(backbone={"use": "dinov3", "with": {"confg": {}}})
    with pytest.raises(DefectkitError, match="backbone.with.confg"):
        run_recipe_dict(recipe([{"train": {"use": "dinov3_multitask", "with": options}}]), tmp_path / "run")


def test_focal_loss_uncertainty_weights_and_a_weighted_sampler_train(registered, tmp_path):
    options = tiny_train_options(classification_loss="focal", weighting="uncertainty", balance="sampler")
    run_dir = run_recipe_dict(recipe([{"train": {"use": "dinov3_multitask", "with": options}}]), tmp_path / "run")
    state = torch.load(run_dir / "01_train" / "checkpoint" / "training.pt", weights_only=True)
    log_vars = state["weighting"]["log_vars"]
    assert log_vars.shape == (2,) and bool((log_vars != 0).all())  # the task weights were learnt
    assert np.isfinite(json.loads((run_dir / "metrics.json").read_text())["train"]["loss"])


def test_cam_pseudo_masks_train_the_decoder_on_images_without_masks(registered, tmp_path):
    from defectkit.data.configs import SyntheticConfig
    from defectkit.data.synthetic import synthetic_splits

    # the seed's folder layout with labels but no masks folder: only CAM pseudo-masks can train the decoder
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    lines = []
    for sample in synthetic_splits(SyntheticConfig(kind="neu", size=32, n_train=2, n_test=1))["train"]:
        name = f"{sample.defect_type}_{len(lines)}.png"
        sample.load_image().save(root / "images" / name)
        lines.append(f"{name},{sample.defect_type}")
    (root / "train_labels.txt").write_text("\n".join(lines) + "\n")
    steps = [{"train": {"use": "dinov3_multitask", "with": tiny_train_options(pseudo_masks="cam")}}]
    data = {"format": "folder", "root": str(root), "with": {"val_labels": None}}
    run_dir = run_recipe_dict({**recipe(steps), "data": data}, tmp_path / "run")

    assert json.loads((run_dir / "metrics.json").read_text())["train"]["pseudo_masks"] == 12
    segmentation = [
        json.loads(line)["value"]
        for line in (run_dir / "scalars.jsonl").read_text().splitlines()
        if json.loads(line)["tag"] == "train/segmentation_loss"
    ]
    assert segmentation[0] == 0.0 and segmentation[1] > 0.0  # no masks in stage 1, pseudo-masks in stage 2
