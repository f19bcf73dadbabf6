"""Start-up of real work: a numpy-only recipe's first step, and `defectkit serve`'s first answer.

    python -m benchmarks.bench_startup [--repeats 5] [--run-dir RUN] [--json results.jsonl]

Goals (issue 21): a numpy-only recipe's first step starts within 1.5 s of the
command; `defectkit serve` answers its first HTTP request within 4 s on 2
cores. The reference is `python -c pass` measured in the same run; the ratio
column shows how many times bare Python start-up each takes (below 1: slower).
`--run-dir` serves that run (default: a tiny patch_knn run made here first). The load average is printed:
figures taken on busy cores say little.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from benchmarks.harness import Benchmark, Measurement, parse_args

PLUGIN = {
    "bench_numpy_plugin/__init__.py": "",
    "bench_numpy_plugin/hooks.py": """
        from defectkit import Component, hookimpl

        @hookimpl
        def defectkit_trainers():
            return [Component(kind="trainer", name="bench_np", factory="bench_numpy_plugin.work:Fit")]
    """,
    "bench_numpy_plugin/work.py": """
        import json, time
        import numpy as np

        class Fit:
            def __init__(self, config):
                pass

            def train(self, ctx):
                (ctx.step_dir / "started.json").write_text(json.dumps(time.time()))
                ctx.log_metrics({"mean": float(np.arange(10).mean())})
    """,
}


def install_plugin(root: Path) -> dict[str, str]:
    """A numpy-only third-party plugin on PYTHONPATH, registered through its entry point."""
    dist = root / "bench_numpy_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-numpy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[defectkit]\nbench_np = bench_numpy_plugin.hooks\n")
    for name, source in PLUGIN.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))


def first_step_seconds(recipe: Path, out: Path, env: dict[str, str]) -> float:
    """Seconds from launching `defectkit run` to its first step's first line of code."""
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "defectkit", "run", str(recipe), "--out", str(out)],
        check=True, capture_output=True, env=env,
    )
    return json.loads((out / "01_train" / "started.json").read_text()) - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_first_answer(run_dir: Path, env: dict[str, str], limit: float = 120.0) -> float:
    """Seconds from launching `defectkit serve` to its first HTTP 200 on 127.0.0.1."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "defectkit", "serve", str(run_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        while time.perf_counter() - started < limit:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                    answer.read()
                return time.perf_counter() - started
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"defectkit serve {run_dir} exited with {server.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"defectkit serve gave no answer within {limit:.0f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def tiny_detection_run(out: Path) -> Path:
    """A finished patch_knn run on 32 px synthetic carpet: something for serve to open."""
    recipe = out.with_suffix(".yaml")
    recipe.write_text(
        "version: 1\nname: served\ndevice: cpu\n"
        "data: {format: synthetic, category: carpet, with: {kind: mvtec, size: 32, n_train: 4, n_test: 1}}\n"
        "steps:\n  - train: {use: patch_knn, with: {weights: null, image_size: 32}}\n  - detect: {use: patch_knn}\n"
    )
    command = [sys.executable, "-m", "defectkit", "run", str(recipe), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, repeats=5, run_dir="")
    print(f"load average at the start: {os.getloadavg()[0]:.2f} (2 cores)")
    bench = Benchmark("start-up of real work (seconds)", unit="s", repeats=args.repeats, warmup=args.warmup)
    bench.measure("python -c pass", lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), reference=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = install_plugin(tmp_path / "site")
        recipe = tmp_path / "np.yaml"
        recipe.write_text("version: 1\nname: np\nsteps:\n  - train: {use: bench_np}\n")
        runs = iter(range(10_000))
        first_step_seconds(recipe, tmp_path / "warm", env)
        seconds = [first_step_seconds(recipe, tmp_path / f"run{next(runs)}", env) for _ in range(args.repeats)]
        bench.results.append(Measurement("numpy-only recipe: 1st step", seconds))
        run_dir = Path(args.run_dir) if args.run_dir else tiny_detection_run(tmp_path / "served")
        seconds = [serve_first_answer(run_dir, env) for _ in range(max(1, args.repeats // 2))]
        bench.results.append(Measurement("serve: first HTTP answer", seconds))
    bench.report(args.json_path)
    print("  goals: numpy-only first step <= 1.5 s; serve first answer <= 4 s (2 quiet cores)")


if __name__ == "__main__":
    main()
