"""How runs end and who may write a run folder: SIGTERM, leftovers, the resume hint, the lock, a full disk,
a plugin that raises (issue 20, items 4, 5 and 7)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakes import CALLS, Detector, FakePlugin, recipe

from defectkit.cli import main
from defectkit.errors import PluginError, RunError
from defectkit.io import atomic_dir, atomic_path
from defectkit.locking import LOCK_FILE
from defectkit.plugins import get_registry
from defectkit.recipe import validate_recipe
from defectkit.run import RunInterrupted, run_recipe


@pytest.fixture(autouse=True)
def plugin(register_plugin):
    register_plugin(FakePlugin(), "fake")
    CALLS.clear()


@pytest.fixture
def recipe_file(tmp_path) -> Path:
    path = tmp_path / "fake recipe.yaml"  # a space: the hint must quote it
    path.write_text(yaml.safe_dump(recipe()))
    return path


def _cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        main(list(args))
    return ended.value.code, capsys.readouterr().err


ORIGINAL_DETECT = Detector.detect


def _detect_with(monkeypatch, action):
    monkeypatch.setattr(Detector, "detect", lambda self, ctx: action(ctx))


def _restore_detect(monkeypatch):
    monkeypatch.setattr(Detector, "detect", ORIGINAL_DETECT)


# -- SIGTERM, the resume hint, leftovers --------------------------------------------------------------


def test_sigterm_ends_a_run_like_ctrl_c_and_the_hint_resumes_it(tmp_path, recipe_file, capsys, monkeypatch):
    def terminate(ctx):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this sleep

    _detect_with(monkeypatch, terminate)
    out = tmp_path / "run"
    code, err = _cli(capsys, "run", str(recipe_file), "--out", str(out), "--set", "steps[0].train.with.rank=3")
    assert code == 143
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("defectkit: error: terminated (SIGTERM) during 02_detect")
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    hint = lines[-1].partition("continue with: ")[2]
    assert "--set 'steps[0].train.with.rank=3'" in hint and shlex.quote(str(recipe_file)) in hint

    _restore_detect(monkeypatch)
    CALLS.clear()
    code, err = _cli(capsys, *shlex.split(hint)[1:])
    assert code == 0, err
    assert CALLS == ["detect"] and json.loads((out / "run.json").read_text())["status"] == "finished"


def test_leftover_temporaries_of_a_killed_write_are_removed_on_resume(tmp_path, monkeypatch):
    def interrupt(ctx):
        raise KeyboardInterrupt

    _detect_with(monkeypatch, interrupt)
    out = tmp_path / "run"
    registry = get_registry()
    with pytest.raises(RunInterrupted):
        run_recipe(validate_recipe(recipe(), registry), out=out)
    step = out / "01_train"
    # what a SIGKILL inside atomic_path / atomic_dir leaves: the temporary file, the temporary folder
    (step / ".state.json.k1ll3d_x.tmp.json").write_text("{")
    (step / ".checkpoint.abcd1234.tmp").mkdir()
    (step / ".checkpoint.abcd1234.tmp" / "weights.bin").write_bytes(b"half")
    # killed between atomic_dir's two renames: the previous version waits as .NAME.old and is put back
    (step / ".bank.old").mkdir()
    (step / ".bank.old" / "complete.txt").write_text("previous version")
    _restore_detect(monkeypatch)
    run_recipe(validate_recipe(recipe(), registry), out=out, resume=True)
    assert not list(out.rglob("*.tmp*")), list(out.rglob("*.tmp*"))
    assert (step / "bank" / "complete.txt").read_text() == "previous version" and not (step / ".bank.old").exists()
    assert "removed 01_train/.state.json.k1ll3d_x.tmp.json" in (out / "run.log").read_text()


def test_atomic_writes_still_work_with_the_names_the_cleanup_matches(tmp_path):
    with atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_text("{}")
    with atomic_dir(tmp_path / "checkpoint") as tmp:
        (tmp / "x").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "checkpoint"]


# -- one writer per run folder ---------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from defectkit.locking import RunLock
    lock = RunLock(sys.argv[1])
    lock.acquire("defectkit run first.yaml --out busy")
    print("locked", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def busy_run(tmp_path):
    """A finished run folder that another process is writing into (it holds the lock)."""
    out = tmp_path / "run"
    run_recipe(validate_recipe(recipe(), get_registry()), out=out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield out, holder
    holder.kill()
    holder.wait(timeout=30)


def test_a_second_process_resuming_a_busy_folder_is_refused(busy_run, recipe_file, capsys):
    out, holder = busy_run
    CALLS.clear()
    for extra in (["--resume"], []):
        code, err = _cli(capsys, "run", str(recipe_file), "--out", str(out), *extra)
        assert code == 2 and err.count("\n") == 1, err
        assert f"another defectkit process is writing this run folder (pid {holder.pid} on " in err
        assert "defectkit run first.yaml --out busy" in err
    assert CALLS == [], "nothing ran"


def test_the_stale_lock_of_a_dead_process_is_taken_over(busy_run):
    out, holder = busy_run
    holder.kill()  # SIGKILL: the lock file stays, naming a process that is gone
    holder.wait(timeout=30)
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    CALLS.clear()
    run_recipe(validate_recipe(recipe(), get_registry()), out=out, resume=True)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not (out / LOCK_FILE).exists(), "released when the run ends"


def test_a_refused_resume_of_a_missing_folder_leaves_nothing(tmp_path):
    with pytest.raises(RunError, match="not a defectkit run directory"):
        run_recipe(validate_recipe(recipe(), get_registry()), out=tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()


# -- a full disk -------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and a kernel that lets this process mount; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); this process has neither")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(small_disk, recipe_file, capsys, monkeypatch):
    import torch

    def write_big(ctx):
        with atomic_path(ctx.step_dir / "maps.pt") as tmp:
            torch.save({"maps": torch.from_numpy(np.random.default_rng(0).random(600_000))}, tmp)  # 4.8 MB

    _detect_with(monkeypatch, write_big)
    out = small_disk / "run"
    code, err = _cli(capsys, "run", str(recipe_file), "--out", str(out))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"defectkit: error: no space left on device while writing {out / '02_detect' / 'maps.pt'}: "
        "free space, then run again with --resume"
    ), err
    assert "Traceback" not in err and "unexpected pos" not in err
    assert not list(out.rglob("*.tmp*")), "the half-written file is removed"

    _restore_detect(monkeypatch)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, err = _cli(capsys, "run", str(recipe_file), "--out", str(out), "--resume")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


# -- a plugin that raises ------------------------------------------------------------------------------------


def test_an_exception_inside_a_plugin_is_one_line_naming_it(tmp_path, recipe_file, capsys, monkeypatch):
    def broken(ctx):
        return {}["missing key"]

    _detect_with(monkeypatch, broken)
    out = tmp_path / "run"
    code, err = _cli(capsys, "run", str(recipe_file), "--out", str(out))
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "defectkit: error: step 02_detect: detector 'fake_detector' of plugin fake failed: "
        f"KeyError: 'missing key' (traceback in {out / 'run.log'})"
    )
    log = (out / "run.log").read_text()
    assert "Traceback" in log and "broken" in log
    with pytest.raises(PluginError):
        run_recipe(validate_recipe(recipe(), get_registry()), out=tmp_path / "again")
