"""`accelerate launch -m defectkit run` spreads a step over processes (two CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import make_distribution

TRAINER = '''
import json
import torch
from defectkit import Component, hookimpl


@hookimpl
def defectkit_trainers():
    return [Component(kind="trainer", name="ddp_probe", factory="dk_ddp_probe:Trainer")]


class Trainer:
    def __init__(self, config):
        pass

    def train(self, ctx):
        accelerator = ctx.accelerator
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model, optimizer = accelerator.prepare(model, optimizer)
        rank = accelerator.process_index
        for step in range(2):
            # each rank sees different data; DDP averages the gradients
            x = torch.full((8, 4), float(rank + 1 + step))
            loss = model(x).pow(2).mean()
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        weights = accelerator.unwrap_model(model).weight.detach().flatten().tolist()
        gathered = accelerator.gather(torch.tensor([float(rank)])).tolist()
        (ctx.step_dir / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank, "world": accelerator.num_processes, "weights": weights,
            "gathered": gathered, "backend": str(accelerator.state.backend), "run_dir": str(ctx.run_dir),
        }))
        ctx.add_artifact("checkpoint", ctx.step_dir)
'''


def test_two_cpu_processes_train_one_step_and_agree(tmp_path):
    site = make_distribution(tmp_path / "site", "dk-ddp-probe", "0.1", {"ddp_probe": "dk_ddp_probe"}, {"dk_ddp_probe": TRAINER})
    recipe = tmp_path / "ddp.yaml"
    # device auto: on a machine without CUDA the processes talk over gloo
    recipe.write_text("version: 1\nname: ddp\nseed: 1\nsteps:\n  - train: {use: ddp_probe}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "defectkit", "run", str(recipe),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = (tmp_path / "runs").iterdir()  # both processes wrote into the one folder the main process named
    ranks = [json.loads((run_dir / "01_train" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["backend"] == "gloo"
    assert ranks[0]["gathered"] == ranks[1]["gathered"] == [0.0, 1.0]
    assert ranks[0]["weights"] == ranks[1]["weights"], "DDP keeps the replicas identical"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert json.loads((run_dir / "environment.json").read_text())["processes"] == 2
