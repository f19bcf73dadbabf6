"""`accelerate launch` spreads the box trainer and detector over two CPU processes (gloo)."""

import json
import os
import subprocess
import sys

RECIPE = """
version: 1
name: ddp_boxes
seed: 0
device: cpu
data:
  format: synthetic
  with: {kind: neu, size: 64, n_train: 4, n_test: 2}
steps:
  - train:
      use: torchvision_boxes
      with: {model: fcos_small, small: {channels: [16, 32, 48, 64], head_channels: 32}, image_size: 64,
             epochs: 2, batch_size: 8, val_split: null, cpu_threads: 1}
  - detect:
      use: torchvision_boxes
      with: {overlays: 2}
  - evaluate:
      use: [box_map]
"""


def test_two_cpu_processes_share_the_batches_and_the_test_images(tmp_path):
    (tmp_path / "ddp.yaml").write_text(RECIPE)
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "defectkit",
        "run",
        "ddp.yaml",
        "--out",
        "run",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    # 24 training images, batches of 8 split between the two processes: 3 optimizer steps an epoch
    assert metrics["train"]["processes"] == 2 and metrics["train"]["optimizer_steps"] == 6
    # each process detected half the test images; the main process gathered all 12 records
    records = (tmp_path / "run/02_detect/box_predictions/detections.jsonl").read_text().splitlines()
    assert metrics["detect"]["images"] == len(records) == 12
    assert len({json.loads(r)["id"] for r in records}) == 12
    assert "map50" in metrics["evaluate"]
