"""A small benchmark harness: warm-up, repeats, median and range, a ratio to a reference.

Every benchmark measures our implementation and a reference in the same run
on the same machine, so the ratio means something; absolute figures differ
from machine to machine. Results print as a table and can be appended as JSON
lines (``--json FILE``) to compare over time.

    from benchmarks.harness import Benchmark
    bench = Benchmark("aupro", unit="maps/s", items=100)
    bench.measure("defectkit", lambda: ours(maps, masks))
    bench.measure("reference", lambda: reference(maps, masks), reference=True)
    bench.report()
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Measurement:
    name: str
    seconds: list[float]
    reference: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class Benchmark:
    """One benchmark: several implementations of the same work, timed alike."""

    title: str
    unit: str = "s"  # "s" for plain seconds, or "<items>/s" for a throughput
    items: int = 1  # items processed by one call, for throughput units
    repeats: int = 5
    warmup: int = 1
    results: list[Measurement] = field(default_factory=list)

    def measure(
        self,
        name: str,
        fn: Callable[[], Any],
        reference: bool = False,
        repeats: int | None = None,
        warmup: int | None = None,
        sync: Callable[[], None] | None = None,
        **extra: Any,
    ) -> Measurement:
        """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

        ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read
        so asynchronous GPU work is counted.
        """
        for _ in range(self.warmup if warmup is None else warmup):
            fn()
        seconds = []
        for _ in range(self.repeats if repeats is None else repeats):
            if sync:
                sync()
            start = time.perf_counter()
            fn()
            if sync:
                sync()
            seconds.append(time.perf_counter() - start)
        result = Measurement(name, seconds, reference, extra)
        self.results.append(result)
        return result

    def _value(self, seconds: float) -> float:
        return seconds if self.unit == "s" else self.items / seconds

    def report(self, json_path: str | Path | None = None) -> list[dict[str, Any]]:
        """Print the table (median, min–max, ratio to the reference) and optionally append JSON lines."""
        reference = next((r for r in self.results if r.reference), None)
        print(f"\n{self.title}  ({platform.machine()}, python {platform.python_version()})")
        print(f"  {'implementation':<28} {'median':>12} {'min – max':>24} {'ratio':>9}")
        rows = []
        for r in self.results:
            values = sorted(self._value(s) for s in r.seconds)
            median = self._value(r.median)
            ratio = reference.median / r.median if reference is not None else None
            ratio_text = f"{ratio:8.2f}x" if ratio is not None else ""
            print(
                f"  {r.name:<28} {median:>10.4g} {self.unit:<2}{values[0]:>10.4g} – {values[-1]:<10.4g} {ratio_text:>9}"
            )
            rows.append(
                {
                    "benchmark": self.title,
                    "implementation": r.name,
                    "unit": self.unit,
                    "median": median,
                    "min": values[0],
                    "max": values[-1],
                    "speedup_vs_reference": ratio,
                    "repeats": len(r.seconds),
                    "reference": r.reference,
                    **r.extra,
                }
            )
        if reference is not None:
            print(f"  ratio = reference median time / implementation median time (reference: {reference.name})")
        if json_path:
            with open(json_path, "a", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")
        return rows


def parse_args(description: str, argv: list[str] | None = None, **defaults: Any) -> argparse.Namespace:
    """Common options: ``--repeats``, ``--warmup``, ``--json FILE``, plus ``defaults`` as extra options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=defaults.pop("repeats", 5))
    parser.add_argument("--warmup", type=int, default=defaults.pop("warmup", 1))
    parser.add_argument("--json", dest="json_path", default=None, help="append results as JSON lines to this file")
    for key, value in defaults.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    return parser.parse_args(sys.argv[1:] if argv is None else argv)


__all__ = ["Benchmark", "Measurement", "asdict", "parse_args"]
