"""What a run shows: its figures at the end, quiet libraries, progress that informs, torch only when needed."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakePlugin, recipe
from rich.console import Console

from conftest import make_distribution
from defectkit.progress import StepProgress
from defectkit.summary import headline_figures, print_summary
from defectkit.testing import run_recipe_dict

ROOT = Path(__file__).resolve().parents[1]

#: a third-party plugin that needs numpy only; its step records what the process had imported
NUMPY_PLUGIN = {
    "numpy_only.hooks": """
        from defectkit import Component, hookimpl

        @hookimpl
        def defectkit_trainers():
            return [Component(kind="trainer", name="np_fit", factory="numpy_only.work:Fit", produces=())]

        @hookimpl
        def defectkit_generators():
            return [Component(kind="generator", name="torch_user", factory="numpy_only.torch_user:UsesTorch")]
    """,
    "numpy_only.work": """
        import json, sys, time
        import numpy as np

        class Fit:
            def __init__(self, config):
                pass

            def train(self, ctx):
                seen = {"torch_at_start": "torch" in sys.modules, "started": time.time()}
                for step in ctx.progress(range(5), description="fitting", unit="steps"):
                    ctx.log_scalar("loss", 1.0 / (step + 1), step)
                ctx.log_metrics({"fit_loss": 0.2, "image_auroc": 0.75, "rows": 5})
                (ctx.step_dir / "seen.json").write_text(json.dumps(seen))
    """,
    "numpy_only.torch_user": """
        import json

        class UsesTorch:
            def __init__(self, config):
                pass

            def generate(self, ctx):
                import logging, warnings
                import torch  # first imported here, inside the step
                warnings.warn("a library's warning nobody can act on")
                logging.getLogger("somelib").warning("somelib: kernels not found")
                (ctx.step_dir / "draw.json").write_text(json.dumps(torch.rand(3).tolist()))
    """,
}


@pytest.fixture
def numpy_plugin(tmp_path):
    site = make_distribution(tmp_path / "site", "numpy-only", "0.1.0", {"numpy_only": "numpy_only.hooks"}, NUMPY_PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return env


def run_cli(args, env, tmp_path, recipe_text):
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text)
    return subprocess.run(
        [sys.executable, "-m", "defectkit", *args, str(path)], capture_output=True, text=True, timeout=300, env=env
    )


NP_RECIPE = "version: 1\nname: np\nseed: 7\nsteps:\n  - train: {use: np_fit}\n"


def test_a_numpy_only_run_never_imports_torch_and_ends_with_its_figures(numpy_plugin, tmp_path):
    out = tmp_path / "run"
    result = run_cli(["run", "--out", str(out)], numpy_plugin, tmp_path, NP_RECIPE)
    assert result.returncode == 0, result.stderr
    seen = json.loads((out / "01_train" / "seen.json").read_text())
    assert seen["torch_at_start"] is False
    environment = json.loads((out / "environment.json").read_text())
    assert environment["torch_loaded"] is False and environment["seed"] == 7
    # the table: step, component, the headline figures (not the row count), then the report
    table = result.stdout
    assert "01_train" in table and "np_fit" in table
    assert "fit_loss" in table and "0.2000" in table and "image_auroc" in table and "0.7500" in table
    assert "rows" not in table
    assert table.rstrip().endswith(f"report: {out / 'report.html'}")
    # one line per finished loop, with its rate and the latest loss, in the log
    log = (out / "run.log").read_text()
    assert "fitting: 5/5 steps in" in log and "steps/s, loss 0.2" in log


def test_quiet_prints_only_the_run_directory_and_show_prints_the_table(numpy_plugin, tmp_path):
    out = tmp_path / "run"
    result = run_cli(["run", "--quiet", "--out", str(out)], numpy_plugin, tmp_path, NP_RECIPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n" and result.stderr == ""
    shown = subprocess.run(
        [sys.executable, "-m", "defectkit", "show", str(out)], capture_output=True, text=True, timeout=120, env=numpy_plugin
    )
    assert shown.returncode == 0 and "image_auroc" in shown.stdout and "finished" in shown.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "defectkit", "show", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and "not a defectkit run directory" in missing.stderr
    assert missing.stderr.count("\n") == 1


def test_libraries_are_quiet_and_torch_is_seeded_when_a_step_first_imports_it(numpy_plugin, tmp_path):
    out = tmp_path / "run"
    text = "version: 1\nname: t\nseed: 11\nsteps:\n  - generate: {use: torch_user}\n"
    result = run_cli(["run", "--out", str(out)], numpy_plugin, tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "kernels not found" not in result.stderr and "nobody can act on" not in result.stderr
    log = (out / "run.log").read_text()
    assert "somelib: kernels not found" in log and "nobody can act on" in log
    import torch

    torch.manual_seed(11)
    assert json.loads((out / "01_generate" / "draw.json").read_text()) == torch.rand(3).tolist()
    environment = json.loads((out / "environment.json").read_text())
    assert environment["torch"] == torch.__version__ and environment["device"] == "cpu"
    verbose = run_cli(["run", "--verbose", "--out", str(tmp_path / "verbose")], numpy_plugin, tmp_path, text)
    assert verbose.returncode == 0 and "kernels not found" in verbose.stderr


def test_importing_diffusers_during_a_run_prints_no_bitsandbytes_message(tmp_path):
    # bitsandbytes (imported by diffusers) logs "Failed to load CPU gemm_4bit_forward ..." on CPUs with avx512bf16
    def import_diffusers(quiet: bool) -> subprocess.CompletedProcess:
        code = (
            "import sys, logging\n"
            "if sys.argv[1] == 'quiet':\n"
            "    import defectkit.libraries as L\n"
            "    L.LibraryOutput(logging.FileHandler(sys.argv[2]), None, verbose=False).__enter__()\n"
            "import diffusers\n"
            "from diffusers import UNet2DModel\n"
        )
        args = [sys.executable, "-c", code, "quiet" if quiet else "loud", str(tmp_path / "run.log")]
        return subprocess.run(args, capture_output=True, text=True, timeout=300)

    loud = import_diffusers(quiet=False)
    if "gemm_4bit" not in loud.stderr:
        pytest.skip("bitsandbytes prints nothing on this CPU (no avx512bf16): nothing to quiet")
    quiet = import_diffusers(quiet=True)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "gemm_4bit" in (tmp_path / "run.log").read_text()


def test_headline_figures_keep_totals_gains_and_intervals_and_leave_breakdowns():
    figures, more = headline_figures(
        {
            "lbp_intersection": 0.93,
            "lbp_intersection/patches": 0.97,
            "gain/real+copy_paste/pixel_ap": 0.05,
            "gain/real+copy_paste/pixel_ap_ci95": [0.01, 0.09],
            "classes": ["a", "b"],
            "images": 36,
        }
    )
    assert figures == [
        ("lbp_intersection", "0.9300"),
        ("gain/real+copy_paste/pixel_ap", "0.0500"),
        ("gain/real+copy_paste/pixel_ap_ci95", "[0.0100, 0.0900]"),
    ]
    assert more == 3


def test_summary_of_a_finished_run(register_plugin, tmp_path):
    register_plugin(FakePlugin(), "fake")
    run_dir = run_recipe_dict(recipe(), tmp_path / "run")
    buffer = io.StringIO()
    print_summary(run_dir, Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert "run: finished" in text
    for step in ("01_train", "02_detect", "03_evaluate", "04_report"):
        assert step in text
    assert "accuracy" in text and "1.0000" in text


def test_progress_without_a_terminal_logs_lines_with_rate_eta_and_loss(caplog, monkeypatch):
    import defectkit.progress as progress

    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    logger = logging.getLogger("defectkit.test_progress")
    bar = StepProgress(Console(file=io.StringIO()), logger)  # a file: not a terminal, so no live bar
    with caplog.at_level(logging.INFO, logger="defectkit.test_progress"):
        for step in bar.track(range(4), None, "train", unit="steps"):
            bar.show_scalar("train/loss", 0.5 / (step + 1))
        for _ in bar.track(iter(range(3)), 3, "early", unit="images"):
            break  # a consumer that stops early still gets its closing line
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("train: 2/4 steps in") and "eta" in line for line in lines)
    assert lines[-2].startswith("train: 4/4 steps in") and lines[-2].endswith("loss 0.125")
    assert lines[-1].startswith("early: 0/3 images in")


def test_progress_on_a_terminal_draws_a_bar_with_the_loss():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=150)
    bar = StepProgress(console, logging.getLogger("defectkit.test_progress"))
    for step in bar.track(range(3), None, "train", unit="steps"):
        bar.show_scalar("loss", 0.25)
        if step == 2:
            bar._progress.refresh()
    assert "loss 0.25" in buffer.getvalue() and "steps/s" in buffer.getvalue()


class FlatGenerator:
    """Four grey images through the shared writer; holds 40 MB while it works, so the peak shows it."""

    def __init__(self, config: None) -> None:
        pass

    def generate(self, ctx) -> None:
        import time

        import psutil
        from PIL import Image

        from defectkit.generated import GeneratedWriter
        from defectkit.resources import SAMPLE_EVERY_S

        (ctx.step_dir / "rss_before.txt").write_text(str(psutil.Process().memory_info().rss))
        import mmap

        # a fresh anonymous mapping, every page written: resident memory the allocator cannot have had before
        ballast = mmap.mmap(-1, 40 * 2**20)
        ballast.write(b"\x01" * (40 * 2**20))
        with GeneratedWriter(ctx.step_dir / "generated") as out:
            for _ in range(4):
                out.add(Image.new("RGB", (8, 8), (100, 100, 100)), "spot", {"seed": 0})
        ctx.add_artifact("generated_images", out.root)
        time.sleep(4 * SAMPLE_EVERY_S)  # held long enough for the sampler to see it
        ballast.close()


def test_train_and_generate_steps_report_peak_memory_and_seconds_per_image(register_plugin, tmp_path):
    from defectkit import Component, hookimpl

    class GeneratorPlugin:
        @hookimpl
        def defectkit_generators(self):
            return [Component(kind="generator", name="flat", factory="test_run_output:FlatGenerator")]

    register_plugin(FakePlugin(), "fake")
    register_plugin(GeneratorPlugin(), "flat")
    data = recipe()
    data["steps"].insert(1, {"generate": {"use": "flat"}})
    run_dir = run_recipe_dict(data, tmp_path / "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    manifest = json.loads((run_dir / "02_generate" / "manifest.json").read_text())
    assert metrics["generate"]["seconds_per_image"] == pytest.approx(manifest["seconds"] / 4, abs=1e-3)
    before_mb = int((run_dir / "02_generate" / "rss_before.txt").read_text()) / 2**20
    assert metrics["generate"]["peak_rss_mb"] >= before_mb + 35  # the 40 MB it held
    assert metrics["train"]["peak_rss_mb"] > 10
    assert "peak_rss_mb" not in metrics.get("evaluate", {})  # only what a train or generate step cost
