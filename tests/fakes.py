"""Small but real components for the core tests, registered with ``register_plugin(FakePlugin())``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from defectkit import Component, hookimpl
from defectkit.data import Sample
from defectkit.io import atomic_path, write_json


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int = Field(4, ge=1, description="adapter rank")
    steps: int = Field(3, ge=1)


class DetectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gain: float = 1.0


class MetricConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str | list[str] | None = None
    n: int = Field(4, ge=1)


CALLS: list[str] = []
#: the fake trainer raises KeyboardInterrupt (Ctrl-C) when it reaches this step
INTERRUPT_AT: dict[str, int | None] = {"step": None}


class TinyData:
    """A few 8x8 images: flat (normal) or with a bright square (defective)."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config

    def samples(self, split: str) -> list[Sample]:
        out = []
        for i in range(self.config.n):
            defective = split == "test" and i % 2 == 1

            def load(defective=defective):
                pixels = np.full((8, 8, 3), 100, np.uint8)
                mask = np.zeros((8, 8), bool)
                if defective:
                    pixels[2:5, 2:5] = 250
                    mask[2:5, 2:5] = True
                return Image.fromarray(pixels), mask

            kind = "spot" if defective else "good"
            out.append(Sample(id=f"{split}/{kind}/{i:03d}", split=split, label=int(defective), defect_type=kind, loader=load))
        return out


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def train(self, ctx) -> None:
        CALLS.append(f"train resume={ctx.resume}")
        state_path = ctx.step_dir / "state.json"
        state = json.loads(state_path.read_text()) if ctx.resume and state_path.exists() else {"step": 0, "value": 0.0}
        pixels = [np.asarray(s.load_image(), np.float32).mean() for s in ctx.samples("train")]
        for step in range(state["step"], self.config.steps):
            if INTERRUPT_AT["step"] == step:
                INTERRUPT_AT["step"] = None
                raise KeyboardInterrupt
            state["value"] += float(np.mean(pixels)) * self.config.rank
            state["step"] = step + 1
            write_json(state_path, state)
            ctx.log_scalar("loss", 1.0 / (step + 1), step)
        ctx.add_artifact("checkpoint", state_path)
        ctx.log_metrics({"final_value": state["value"]})


class Detector:
    def __init__(self, config: DetectConfig) -> None:
        self.config = config

    def detect(self, ctx) -> None:
        CALLS.append("detect")
        checkpoint = json.loads(ctx.artifact("checkpoint").read_text())
        maps = ctx.step_dir / "maps"
        for sample in ctx.samples("test"):
            pixels = np.asarray(sample.load_image(), np.float32).mean(axis=2)
            path = maps / sample.defect_type / (sample.id.rsplit("/", 1)[1] + ".npy")
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                np.save(tmp, (pixels - 100) * self.config.gain, allow_pickle=False)
        ctx.add_artifact("anomaly_maps", maps)
        ctx.log_metrics({"checkpoint_steps": checkpoint["step"]})


class MaxScoreAccuracy:
    """Accuracy of "map max > 0" against the labels: small, but a real figure."""

    def __init__(self, config: MetricConfig) -> None:
        self.config = config

    def evaluate(self, ctx) -> dict[str, Any]:
        maps = ctx.artifact("anomaly_maps")
        correct = []
        for sample in ctx.samples("test"):
            anomaly_map = np.load(maps / sample.defect_type / (sample.id.rsplit("/", 1)[1] + ".npy"))
            correct.append((anomaly_map.max() > 0) == bool(sample.label))
        return {"accuracy": float(np.mean(correct)) * self.config.scale}


class CountSamples:
    """A metric with no options: how many test samples there are."""

    def __init__(self, config: None) -> None:
        assert config is None

    def evaluate(self, ctx) -> dict[str, Any]:
        return {"test_samples": len(ctx.samples("test"))}


class FakePlugin:
    @hookimpl
    def defectkit_trainers(self):
        return [Component(kind="trainer", name="fake_lora", factory="fakes:Trainer", config="fakes:TrainConfig")]

    @hookimpl
    def defectkit_detectors(self):
        return [Component(kind="detector", name="fake_detector", factory="fakes:Detector", config="fakes:DetectConfig")]

    @hookimpl
    def defectkit_metrics(self):
        return [
            Component(kind="metric", name="fake_accuracy", factory="fakes:MaxScoreAccuracy", config="fakes:MetricConfig"),
            Component(kind="metric", name="fake_count", factory="fakes:CountSamples"),
        ]

    @hookimpl
    def defectkit_datasets(self):
        return [Component(kind="dataset", name="fake_data", factory="fakes:TinyData", config="fakes:DataConfig")]


def recipe(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 1,
        "name": "fake",
        "seed": 3,
        "data": {"format": "fake_data", "with": {"n": 4}},
        "steps": [
            {"train": {"use": "fake_lora", "with": {"rank": 2}}},
            {"detect": {"use": "fake_detector"}},
            {"evaluate": {"use": ["fake_accuracy"], "with": {"fake_accuracy": {"scale": 1.0}}}},
            {"report": None},
        ],
    }
    base.update(overrides)
    return base
