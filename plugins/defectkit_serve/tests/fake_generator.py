"""A small generator component with an interactive session, standing in for a diffusion model in the tests.

It paints a defect-coloured blob whose position follows the seed: deterministic, so the tests can check that
the session got the label, seed, image and mask the UI sent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from defectkit import Component, hookimpl
from defectkit.generated import GeneratedWriter
from defectkit.protocols import SessionCapabilities

COLOURS = {"scratch": (220, 30, 30), "stain": (30, 30, 220)}


class FakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[str] = Field(default_factory=lambda: ["scratch", "stain"])
    size: int = 32
    per_label: int = 1


class FakeSession:
    opened = 0
    #: paints into an uploaded image where one is given, else draws on grey
    capabilities = SessionCapabilities(inpainting=True)

    def __init__(self, config: FakeConfig, run_dir: Path, step_id: str, device: str) -> None:
        FakeSession.opened += 1
        self.config, self.run_dir, self.step_id, self.device = config, run_dir, step_id, device
        self.calls: list[dict] = []

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def generate(self, label, prompt=None, negative_prompt=None, seed=0, guidance=None, steps=None,
                 control_image=None, image=None, mask=None) -> Image.Image:  # fmt: skip
        self.calls.append({"label": label, "prompt": prompt, "seed": seed, "guidance": guidance, "steps": steps,
                           "control": control_image is not None, "image": image, "mask": mask})  # fmt: skip
        size = self.config.size
        base = np.asarray(image.resize((size, size))) if image is not None else np.full((size, size, 3), 128, np.uint8)
        base = base.copy()
        if mask is not None:
            region = np.asarray(mask.resize((size, size))) > 127
        else:
            rng = np.random.default_rng(seed)
            y, x = rng.integers(4, size - 4, 2)
            region = np.zeros((size, size), bool)
            region[y - 3 : y + 3, x - 3 : x + 3] = True
        base[region] = COLOURS.get(label, (0, 0, 0))
        return Image.fromarray(base)


class FakeGenerator:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config

    def generate(self, ctx) -> None:
        session = FakeSession(self.config, ctx.run_dir, ctx.step_id, "cpu")
        with GeneratedWriter(ctx.step_dir / "generated") as out:
            for label in self.config.labels:
                for seed in range(self.config.per_label):
                    out.add(session.generate(label, seed=seed), label, {"seed": seed})
        FakeSession.opened -= 1  # the run's own session is not one the UI opened
        ctx.add_artifact("generated_images", out.root)

    def open_session(self, run_dir: Path, step_id: str, device: str) -> FakeSession:
        return FakeSession(self.config, run_dir, step_id, device)


class SessionlessGenerator(FakeGenerator):
    open_session = None


@hookimpl
def defectkit_generators() -> list[Component]:
    return [
        Component(
            kind="generator",
            name="fake_paint",
            factory=f"{__name__}:FakeGenerator",
            config=f"{__name__}:FakeConfig",
            summary="test generator with a session",
        ),  # fmt: skip
        Component(
            kind="generator",
            name="fake_batch_only",
            factory=f"{__name__}:SessionlessGenerator",
            config=f"{__name__}:FakeConfig",
            summary="test generator without a session",
        ),  # fmt: skip
    ]
