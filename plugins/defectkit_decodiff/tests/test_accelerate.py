"""`accelerate launch -m defectkit run` trains decodiff with two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import numpy as np
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


def test_two_cpu_processes_share_the_detection_and_give_the_single_process_scores(tmp_path):
    import shutil

    from defectkit.testing import run_recipe_dict
    from defectkit_decodiff.tests.test_recipe import full

    data = recipe(full(train={"steps": 2}))
    single = run_recipe_dict(data, tmp_path / "single")
    # the same run with its detection undone, resumed by two processes: they score the single process's model
    shared = tmp_path / "shared"
    shutil.copytree(single, shared)
    for step in ("02_detect", "03_evaluate", "04_report"):
        shutil.rmtree(shared / step, ignore_errors=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "defectkit", "run", str(path), "--out", str(shared), "--resume"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((shared / "metrics.json").read_text())["detect"]["processes"] == 2

    def rows(run):
        lines = (run / "02_detect" / "scores.csv").read_text().splitlines()[1:]
        return [(name, float(score)) for name, score in (line.split(",") for line in lines)]

    assert [n for n, _ in rows(shared)] == [n for n, _ in rows(single)]
    for (_, got), (_, expected) in zip(rows(shared), rows(single), strict=True):
        assert abs(got - expected) < 1e-5
    for name, _ in rows(single):  # every map written once, by one of the two processes, as one process writes it
        got = np.load(shared / "02_detect" / "anomaly_maps" / f"{name}.npy")
        assert np.allclose(got, np.load(single / "02_detect" / "anomaly_maps" / f"{name}.npy"), atol=1e-5)
