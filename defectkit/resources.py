"""What a step cost: its peak memory, measured by the engine around every step.

Seed 000 §9.2 compares set-ups by training time, memory and seconds per
generated image; the engine measures the first two for every step, so no
component has to. On a GPU the figure is torch's ``max_memory_allocated`` for
the step (reset when it starts); everywhere the process's peak resident
memory during the step, sampled by a background thread with psutil (the
kernel's own peak, ``ru_maxrss``, never goes down, so it cannot tell one step
from the one before).
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType

import psutil

#: seconds between two RSS samples: short steps are still sampled several times
SAMPLE_EVERY_S = 0.05


class PeakMemory:
    """Peak memory while the block runs: ``rss_mb`` (this process) and ``cuda_mb`` (``None`` without CUDA)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_mb = 0.0
        self.cuda_mb: float | None = None
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._peak = max(self._peak, self._process.memory_info().rss)

    @staticmethod
    def _cuda():
        torch = sys.modules.get("torch")  # never import torch for this: a numpy-only step stays light
        return torch.cuda if torch is not None and torch.cuda.is_available() else None

    def __enter__(self) -> PeakMemory:
        self._peak = self._process.memory_info().rss
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, name="defectkit-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        self.rss_mb = round(self._peak / 2**20, 1)
        cuda = self._cuda()  # a step may have imported torch (and used CUDA) since it began
        if cuda is not None:
            self.cuda_mb = round(cuda.max_memory_allocated() / 2**20, 1)

    def figures(self) -> dict[str, float]:
        """``peak_rss_mb`` and, on a GPU, ``peak_cuda_mb``: what the engine adds to a step's metrics."""
        out = {"peak_rss_mb": self.rss_mb}
        if self.cuda_mb is not None:
            out["peak_cuda_mb"] = self.cuda_mb
        return out
