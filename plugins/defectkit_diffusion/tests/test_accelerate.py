"""`accelerate launch -m defectkit run` shares the generate step's images between two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from defectkit.generated import read_generated
from defectkit.testing import run_recipe_dict
from defectkit_diffusion.tests.test_generate import generate_step, recipe


@pytest.mark.slow  # two processes each import torch and load the pipeline: about a minute on 2 cores
def test_two_cpu_processes_share_the_images(registered, tiny_models, tmp_path):
    step = generate_step(tiny_models["sd15"], batch_size=1, defect_types=["crazing", "scratches"])
    single = run_recipe_dict(recipe([step]), tmp_path / "single")
    data = recipe([step])
    data["device"] = "auto"  # without CUDA the processes talk over gloo
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "defectkit", "run", str(path), "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["generate"]
    assert metrics["processes"] == 2 and metrics["generated_images"] == 4
    shared = read_generated(tmp_path / "run" / "01_generate" / "generated")
    alone = read_generated(single / "01_generate" / "generated")
    assert [s.defect_type for s in shared] == ["crazing", "crazing", "scratches", "scratches"]
    for a, b in zip(shared, alone, strict=True):  # a seed gives the same image in whichever process makes it
        assert np.array_equal(np.asarray(a.load_image()), np.asarray(b.load_image()))
