"""The quickstart's wall time, from ``defectkit run`` to the report, and its figures.

    python -m benchmarks.bench_quickstart                 # the README's command, timed
    python -m benchmarks.bench_quickstart --set steps[0].train.with.epochs=20

Runs ``defectkit run recipes/quickstart.yaml`` in a fresh process (so the import
time counts, as it does for a user), with the machine's default threads, and
prints the wall time, the load average before and after (the README's figure
holds on an idle machine; other work on the cores stretches it), each step's
seconds and the headline metrics. The target is 180 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = {
    "text2image": ("train_seconds", "final_loss", "optimizer_steps"),
    "evaluate_generation": ("lbp_intersection", "lbp_chi2"),
    "evaluate": ("image_auroc", "pixel_auroc", "pixel_aupro"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="recipe override, as for defectkit run")
    parser.add_argument("--keep", help="write the run here instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "run"
        command = [
            sys.executable,
            "-m",
            "defectkit",
            "run",
            str(ROOT / "recipes" / "quickstart.yaml"),
            "--out",
            str(out),
        ]
        for override in args.set:
            command += ["--set", override]
        load_before = os.getloadavg()
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()
        print(f"quickstart: {seconds:.1f} s wall (target 180 s on 2 cores)")
        print(f"load average before {load_before[0]:.2f}, after (1 min) {load_after[0]:.2f}, cores {os.cpu_count()}")
        for manifest in sorted(out.glob("*/manifest.json")):
            step = json.loads(manifest.read_text())
            print(f"  {manifest.parent.name:28s} {step['seconds']:7.1f} s")
        metrics = json.loads((out / "metrics.json").read_text())
        for step, keys in HEADLINE.items():
            figures = {k: metrics.get(step, {}).get(k) for k in keys}
            print(
                f"  {step}: "
                + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
            )


if __name__ == "__main__":
    main()
