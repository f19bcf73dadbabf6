"""CLI start-up: `defectkit --help` and `defectkit plugins` against a bare `python -c pass`.

    python -m benchmarks.bench_cli [--repeats 10] [--json results.jsonl]

Start-up matters because every command pays it; the reference is the cost of
starting Python at all, so the ratio shows what defectkit adds on top.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.harness import Benchmark, parse_args


def command(*args: str):
    def call() -> None:
        subprocess.run([sys.executable, *args], check=True, capture_output=True)

    return call


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, repeats=10)
    bench = Benchmark("CLI start-up (wall time per command)", unit="s", repeats=args.repeats, warmup=args.warmup)
    bench.measure("python -c pass", command("-c", "pass"), reference=True)
    bench.measure("defectkit --help", command("-m", "defectkit", "--help"))
    bench.measure("defectkit plugins", command("-m", "defectkit", "plugins"))
    bench.measure("defectkit plugins --json", command("-m", "defectkit", "plugins", "--json"))
    bench.report(args.json_path)
    print("  (a ratio below 1 means slower than bare Python start-up: that is the cost defectkit adds)")


if __name__ == "__main__":
    main()
