"""Progress of a step's loops: a live bar on a terminal, log lines everywhere.

``ctx.progress(iterable, total, description, unit)`` draws one bar per loop
with the rate (``unit``/s), elapsed time, ETA and the latest loss the step
logged with ``ctx.log_scalar`` (any tag whose last part contains ``loss``), so
a trainer gets an informative bar without any code of its own. Every finished
loop leaves one line in the log ("train: 100/100 steps in 13.9 s, 7.2
steps/s, loss 0.0517"); where the console is not a terminal (CI, ``nohup``,
a pipe) no bar is drawn and a line every :data:`LINE_EVERY_S` seconds says
how far the loop is instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: without a terminal: seconds between two progress lines of one loop
LINE_EVERY_S = 30.0


def _rate(done: int, seconds: float) -> float:
    return done / seconds if seconds > 0 else 0.0


class StepProgress:
    """The progress display of one run: loops may nest (an epoch bar inside a step bar)."""

    def __init__(self, console: Any | None, logger: logging.Logger) -> None:
        self.console = console
        self.logger = logger
        self._progress: Any = None
        self._open = 0
        #: the latest loss per open loop (innermost last)
        self._loss: str = ""

    def show_scalar(self, tag: str, value: float) -> None:
        """A scalar a step logged: losses appear beside the bar and in the closing line."""
        if "loss" in tag.rsplit("/", 1)[-1]:
            self._loss = f"{tag.rsplit('/', 1)[-1]} {value:.4g}"
            if self._progress is not None:
                for task in self._progress.tasks:
                    self._progress.update(task.id, postfix=self._loss)

    def _live(self) -> Any:
        if self.console is None or not getattr(self.console, "is_terminal", False):
            return None
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[postfix]}"),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self._progress

    def track(
        self,
        iterable: Iterable[T],
        total: int | None,
        description: str,
        unit: str = "it",
        size: Callable[[T], int] | None = None,
    ) -> Iterator[T]:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        live = self._live()
        task = live.add_task(description, total=total, rate="", postfix=self._loss) if live is not None else None
        self._open += 1
        started = last_line = time.perf_counter()
        done = 0
        failed = False
        try:
            for item in iterable:
                yield item
                step = 1 if size is None else size(item)
                done += step
                now = time.perf_counter()
                if live is not None:
                    live.update(task, advance=step, rate=f"{_rate(done, now - started):.1f} {unit}/s")
                elif now - last_line >= LINE_EVERY_S:
                    last_line = now
                    self.logger.info("%s", self._line(description, done, total, now - started, unit, running=True))
        except BaseException as exc:
            # a consumer that stops early (break) closes us with GeneratorExit: the loop still ended well
            failed = not isinstance(exc, GeneratorExit)
            raise
        finally:
            self._open -= 1
            if live is not None:
                live.remove_task(task)
                if self._open == 0:
                    live.stop()
                    self._progress = None
            if not failed:
                self.logger.info("%s", self._line(description, done, total, time.perf_counter() - started, unit))
            if self._open == 0:
                self._loss = ""

    def _line(self, description: str, done: int, total: int | None, seconds: float, unit: str, running: bool = False) -> str:
        rate = _rate(done, seconds)
        count = f"{done}/{total}" if total is not None else str(done)
        text = f"{description}: {count} {unit} in {seconds:.1f} s, {rate:.1f} {unit}/s"
        if running and total and rate > 0:
            text += f", eta {(total - done) / rate:.0f} s"
        return text + (f", {self._loss}" if self._loss else "")
