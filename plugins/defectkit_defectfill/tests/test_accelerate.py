"""`accelerate launch -m defectkit run` trains and generates with DefectFill on two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from defectkit_defectfill.tests.helpers import recipe


@pytest.mark.slow
def test_two_cpu_processes_train_and_generate(tmp_path):
    data = recipe(train={"steps": 2, "checkpoint_every": 1}, generate={"combine": []})
    data["device"] = "auto"  # without CUDA the processes talk over gloo
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "defectkit", "run", str(path), "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["processes"] == 2 and metrics["train"]["nonfinite_steps"] == 0
    assert metrics["generate"]["generated_images"] == 2
    step = tmp_path / "run" / "01_train"
    assert json.loads((step / "checkpoints" / "step-00000001" / "meta.json").read_text())["processes"] == 2
