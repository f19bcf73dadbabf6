"""A checkpoint that cannot be read is one line naming the file (issue 20, item 7)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from defectkit.errors import DataError
from defectkit.tensorfile import load_tensors

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Stands for any object a pickle could rebuild (and run code while doing so)."""


def test_tensor_files_load(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "state.pt")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "state.safetensors"))
    assert load_tensors(tmp_path / "state.pt")["w"].sum() == 2
    assert load_tensors(tmp_path / "state.safetensors")["w"].sum() == 0


def test_unreadable_checkpoints_are_one_line_naming_the_file(tmp_path):
    torch.save({"w": Payload()}, tmp_path / "objects.pt")
    with open(tmp_path / "pickle.pt", "wb") as handle:
        pickle.dump({"run": os.getcwd}, handle)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(1000)}, good)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:300])
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    for name, expected in [
        ("objects.pt", "not a tensor checkpoint defectkit can load safely"),
        ("pickle.pt", "not a tensor checkpoint defectkit can load safely"),
        ("truncated.pt", "cannot be read as a checkpoint"),
        ("junk.safetensors", "cannot be read as a checkpoint"),
        ("missing.pt", "checkpoint file is missing"),
    ]:
        with pytest.raises(DataError) as raised:
            load_tensors(tmp_path / name)
        message = str(raised.value)
        assert message.startswith(f"{tmp_path / name}: ") and expected in message, message
        assert "\n" not in message and "weights_only=False" not in message


def test_a_pickle_given_as_weights_is_one_line_from_the_cli(tmp_path, tiny_mvtec):
    torch.save({"conv1.weight": Payload()}, tmp_path / "weights.pt")
    result = subprocess.run(
        [
            sys.executable, "-m", "defectkit", "run", "recipes/quickstart.yaml", "--out", str(tmp_path / "run"),
            "--set", "steps=[{detect: {use: patch_knn, with: {weights: " + str(tmp_path / "weights.pt") + "}}}]",
            "--set", "data={format: mvtec, root: " + str(tiny_mvtec) + "}",
        ],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith(f"defectkit: error: {tmp_path / 'weights.pt'}: not a tensor checkpoint"), last
