"""`accelerate launch -m defectkit run` trains ti_lora with two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from defectkit_finetune.tests.helpers import recipe


@pytest.mark.slow
def test_two_cpu_processes_train_ti_lora(tiny_pipelines, tmp_path):
    options = {"model": str(tiny_pipelines("sd15")), "steps": 2, "checkpoint_every": 1, "validation_images": False}
    data = recipe("ti_lora", options)
    data["device"] = "auto"  # without CUDA the processes talk over gloo
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "defectkit", "run", str(path), "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert metrics["processes"] == 2 and metrics["steps"] == 2 and metrics["nonfinite_steps"] == 0
    step = tmp_path / "run" / "01_train"
    assert json.loads((step / "checkpoints" / "step-00000001" / "meta.json").read_text())["processes"] == 2
    assert (step / "adapter" / "pytorch_lora_weights.safetensors").is_file()
