"""Admission to the models: one request at a time, a bounded number waiting, the rest told "busy" at once.

Gradio's own queue is unbounded by default: 200 concurrent uploads all wait,
the last for over a minute, with no word of why. Model events therefore skip
gradio's queue (``concurrency_limit=None``) and pass through one
:class:`ModelGate` instead, which keeps one model on one device to one thread
at a time and answers a request beyond ``max_waiting`` immediately.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from functools import cache

from defectkit.errors import DefectkitError

#: requests that may wait for the model behind the one running
MAX_WAITING = 8


class Busy(DefectkitError):
    """The gate is full: the user should try again in a moment."""


class ModelGate:
    """One model request at a time, at most ``max_waiting`` more waiting for it."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._model = threading.Lock()
        self._count = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Requests running or waiting now."""
        return self._admitted

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Run the block when the model is free; raise :class:`Busy` at once when too many already wait."""
        with self._count:
            if self._admitted > self.max_waiting:
                raise Busy(f"busy: {self._admitted} requests are being served or waiting; try again in a moment")
            self._admitted += 1
        try:
            with self._model:
                yield
        finally:
            with self._count:
                self._admitted -= 1
            release_memory()


@cache
def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc only).

    A large upload is decoded into many 16 MB blocks; once glibc's adaptive
    mmap threshold has grown, such blocks come from the heap, and without a
    trim a 49-megapixel image's memory stays resident after the request.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
