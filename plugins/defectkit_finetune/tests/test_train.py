"""Every trainer end to end on tiny pipelines: artifacts, metrics, checkpoints."""

import json

from defectkit.testing import run_recipe_dict
from defectkit_finetune.tests.helpers import recipe


def test_lora_sd15_writes_adapter_and_checkpoints(registered, tiny_pipelines, tmp_path):
    model = str(tiny_pipelines("sd15"))
    run = run_recipe_dict(recipe("lora", {"model": model, "keep_checkpoints": 1}), tmp_path / "run")
    step = run / "01_train"
    manifest = json.loads((step / "adapter" / "adapter.json").read_text())
    assert manifest["family"] == "sd15" and manifest["lora"] == "pytorch_lora_weights.safetensors"
    assert manifest["embeddings"] == []
    metrics = json.loads((run / "metrics.json").read_text())["train"]
    assert metrics["steps"] == 4 and metrics["train_images"] == 6 and metrics["nonfinite_steps"] == 0
    # checkpoint at step 2 only (the end is the adapter); keep_checkpoints 1
    assert [p.name for p in (step / "checkpoints").iterdir()] == ["step-00000002"]
    assert (step / "validation.png").is_file()
