"""The yolo components: a tiny YAML model trained and run on synthetic steel with every socket refused."""

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from defectkit.errors import DefectkitError
from defectkit.testing import run_recipe_dict

RECIPES = Path(__file__).resolve().parents[3] / "recipes"
HAVE_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
needs_ultralytics = pytest.mark.skipif(
    not HAVE_ULTRALYTICS, reason="ultralytics (the optional extra) is not installed: pip install 'defectkit[yolo]'"
)
DATA = {
    "format": "synthetic",
    "with": {"kind": "neu", "size": 64, "n_train": 8, "n_test": 2},
    "split": {"val_fraction": 0.25},
}


def recipe(steps):
    return {"version": 1, "name": "yolo", "seed": 0, "device": "cpu", "data": DATA, "steps": steps}


@pytest.fixture
def no_network(monkeypatch):
    """Every name lookup and connection fails, and is recorded: the test then asserts there were none."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def tiny_yaml(tmp_path: Path) -> Path:
    """ultralytics' own yolo11.yaml at a smaller scale than n (a quarter of n's widths, a single repeat)."""
    import yaml

    # found without importing ultralytics: its import reads YOLO_OFFLINE, which the yolo step sets first
    root = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0])
    spec = yaml.safe_load((root / "cfg/models/11/yolo11.yaml").read_text())
    spec["scales"] = {"t": [0.25, 0.0625, 256]}
    path = tmp_path / "yolo11t.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@needs_ultralytics
def test_yolo_trains_and_detects_offline(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics_settings"))
    train = {
        "model": str(tiny_yaml(tmp_path)),
        "image_size": 64,
        "epochs": 2,
        "batch_size": 16,
        "train_args": {"mosaic": 0.0},
    }
    steps = [
        {"train": {"use": "yolo", "with": train}},
        {"detect": {"use": "yolo", "with": {"overlays": 2, "score_threshold": 0.0}}},
        {"evaluate": {"use": ["box_map"]}},
    ]
    run_dir = run_recipe_dict(recipe(steps), tmp_path / "run")
    assert no_network == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print("yolo, tiny YAML, 2 epochs:", metrics)
    assert metrics["train"]["classes"] == 6 and metrics["detect"]["images"] == 12
    assert 0.0 <= metrics["evaluate"]["map50"] <= 1.0
    folder = run_dir / "01_train/checkpoint"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "model.yaml", "model.json"}
    records = (run_dir / "02_detect/box_predictions/detections.jsonl").read_text().splitlines()
    assert len(records) == 12


@needs_ultralytics
def test_yolo_weights_by_name_offline_is_a_one_line_error(tmp_path):
    with pytest.raises(DefectkitError, match="offline: true forbids downloading weights"):
        run_recipe_dict(recipe([{"train": {"use": "yolo", "with": {"model": "yolo11n.pt"}}}]), tmp_path / "run")


def test_a_missing_extra_names_it(monkeypatch, tmp_path):
    from defectkit_boxes import yolo

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics" else real(name, *a))
    with pytest.raises(DefectkitError, match=r"ultralytics \(AGPL-3.0\).*pip install 'defectkit\[yolo\]'"):
        yolo.YoloTrainer()
    with pytest.raises(DefectkitError, match=r"pip install 'defectkit\[yolo\]'"):
        run_recipe_dict(recipe([{"detect": {"use": "yolo"}}]), tmp_path / "run")


def test_neudet_yolo_recipe_is_valid_or_names_the_extra(tmp_path):
    from defectkit.plugins import get_registry
    from defectkit.recipe import load_recipe

    # validation looks for the data folder (not its images): an empty one stands in for NEU-DET
    overrides = [f"data.root={tmp_path}"]
    if not HAVE_ULTRALYTICS:  # the extra is not installed: validation stops at the first yolo step, saying what to run
        with pytest.raises(DefectkitError, match=r"steps\[0\]\.train\.use: trainer 'yolo' needs ultralytics.*"
                           r"run: pip install 'defectkit\[yolo\]'$"):
            load_recipe(RECIPES / "neudet_yolo.yaml", get_registry(), overrides=overrides)
        return
    validated = load_recipe(RECIPES / "neudet_yolo.yaml", get_registry(), overrides=overrides)
    steps = validated.resolved["steps"]
    assert steps[0]["train"]["use"] == ["yolo"] and steps[0]["train"]["with"]["model"] == "yolo11s.pt"
    assert steps[1]["detect"]["use"] == ["yolo"] and steps[2]["evaluate"]["use"] == ["box_map"]
    assert validated.resolved["data"]["split"]["val_fraction"] == 0.1


@needs_ultralytics
def test_neudet_yolo_recipe_runs_on_synthetic_steel_with_a_tiny_model(tmp_path, monkeypatch, no_network):
    from defectkit.plugins import get_registry
    from defectkit.recipe import load_recipe
    from defectkit.run import run_recipe

    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics_settings"))
    overrides = [
        "data.format=synthetic",
        "data.root=null",
        "data.with={kind: neu, size: 64, n_train: 6, n_test: 2}",
        f"steps[0].train.with.model={tiny_yaml(tmp_path)}",
        "steps[0].train.with.offline=true",
        "steps[0].train.with.device=cpu",
        "steps[0].train.with.image_size=64",
        "steps[0].train.with.epochs=1",
        "device=cpu",
    ]
    validated = load_recipe(RECIPES / "neudet_yolo.yaml", get_registry(), overrides=overrides)
    run_dir = run_recipe(validated, out=tmp_path / "run")
    assert no_network == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"map50", "map50_95", "ap50/scratches"} <= set(metrics["evaluate"])
    assert (run_dir / "report.html").is_file()


@needs_ultralytics
def test_yolo_resumes_from_ultralytics_last_checkpoint(tmp_path, monkeypatch, no_network):
    from defectkit.plugins import get_registry
    from defectkit.recipe import validate_recipe
    from defectkit.run import run_recipe
    from defectkit_boxes import yolo

    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics_settings"))
    train = {
        "model": str(tiny_yaml(tmp_path)),
        "image_size": 64,
        "epochs": 2,
        "batch_size": 16,
        "train_args": {"mosaic": 0.0},
    }
    steps = [{"train": {"use": "yolo", "with": train}}]
    log_epochs = yolo.YoloTrainer._log_epochs

    def interrupt_after_the_first_epoch(ctx, model):
        log_epochs(ctx, model)

        def stop(trainer):
            if trainer.epoch == 0:
                raise KeyboardInterrupt

        model.add_callback("on_model_save", stop)  # after last.pt of epoch 1 is written

    monkeypatch.setattr(yolo.YoloTrainer, "_log_epochs", staticmethod(interrupt_after_the_first_epoch))
    with pytest.raises(DefectkitError, match="--resume"):
        run_recipe_dict(recipe(steps), tmp_path / "run")
    assert (tmp_path / "run/01_train/ultralytics/train/weights/last.pt").is_file()
    assert not (tmp_path / "run/01_train/checkpoint").exists()
    monkeypatch.setattr(yolo.YoloTrainer, "_log_epochs", staticmethod(log_epochs))
    validated = validate_recipe(recipe(steps), get_registry(), source="<test>")
    run_dir = run_recipe(validated, out=tmp_path / "run", resume=True)
    assert no_network == []
    log = (run_dir / "run.log").read_text()
    assert (
        "resuming ultralytics' training" in log
        and "yolo: epoch 2 of 2" in log
        and "yolo: epoch 1 of 2" not in log.split("resuming")[1]
    )
    assert (run_dir / "01_train/checkpoint/model.safetensors").is_file()
