"""An interrupted run resumes to the same weights an uninterrupted run reaches; NaN steps are skipped."""

import pytest
import torch
from safetensors.torch import load_file

from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import RunInterrupted, run_recipe
from defectkit.testing import run_recipe_dict
from defectkit_finetune.tests.helpers import recipe

# augmentation, dropout, onecycle, EMA and accumulation: every piece of state a resume must restore
OPTIONS = {
    "lr": 1e-2,
    "dropout": 0.1,
    "lr_scheduler": "onecycle",
    "ema": True,
    "ema_decay": 0.5,
    "grad_accumulation": 2,
    "snr_gamma": 5.0,
    "noise_offset": 0.05,
    "augment": {"mixup": 0.4, "cutmix": 0.5},
    "defect_loss_weight": 2.0,
    "validation_images": False,
}


@pytest.mark.parametrize("trainer", ["dora", "adalora"])
def test_resume_equals_uninterrupted(registered, tiny_pipelines, tmp_path, monkeypatch, trainer):
    from defectkit_finetune.trainer import FinetuneTrainer

    options = {**OPTIONS, "model": str(tiny_pipelines("sd15"))}
    if trainer == "adalora":
        options = {k: v for k, v in options.items() if k != "dropout"}
        options.update(init_r=4, target_r=2, tinit=1, tfinal=1, delta_t=1, steps=5)
    data = recipe(trainer, options)
    straight = run_recipe_dict(data, tmp_path / "straight")

    original = FinetuneTrainer.save
    saved = []

    def save_then_interrupt(self, ctx, manager, step, *args):
        original(self, ctx, manager, step, *args)
        saved.append(step)
        raise KeyboardInterrupt  # Ctrl-C right after the checkpoint of step 2

    monkeypatch.setattr(FinetuneTrainer, "save", save_then_interrupt)
    with pytest.raises(RunInterrupted):
        run_recipe_dict(data, tmp_path / "resumed")
    monkeypatch.setattr(FinetuneTrainer, "save", original)
    assert saved == [2]

    resumed = run_recipe(validate_recipe(data, get_registry()), out=tmp_path / "resumed", resume=True)
    assert "resumed from the checkpoint of step 2" in (resumed / "run.log").read_text()
    a = load_file(straight / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
    b = load_file(resumed / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_nonfinite_loss_is_skipped_and_counted(registered, tiny_pipelines, tmp_path, monkeypatch):
    import json

    from defectkit_finetune.trainer import Objective

    forward = Objective.forward
    calls = []

    def sometimes_nan(self, *args, **kwargs):
        calls.append(1)
        loss = forward(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(Objective, "forward", sometimes_nan)
    options = {"model": str(tiny_pipelines("sd15")), "validation_images": False}
    run = run_recipe_dict(recipe("lora", options), tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())["train"]
    assert metrics["nonfinite_steps"] == 1 and metrics["final_loss"] == metrics["final_loss"]  # not NaN
    weights = load_file(run / "01_train" / "adapter" / "pytorch_lora_weights.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert "loss is nan, step skipped" in (run / "run.log").read_text()
