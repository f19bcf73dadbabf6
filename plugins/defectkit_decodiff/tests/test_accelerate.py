"""`accelerate launch -m defectkit run` trains decodiff with two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import yaml

from defectkit_decodiff.tests.test_recipe import TRAIN, recipe


def test_two_cpu_processes_train_two_steps(tmp_path):
    data = recipe([{"train": {"use": "decodiff", "with": {**TRAIN, "steps": 2, "checkpoint_every": 1}}}])
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
    assert metrics["processes"] == 2 and metrics["steps"] == 2
    meta = json.loads((tmp_path / "run" / "01_train" / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 2
