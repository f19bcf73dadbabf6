"""One writer per run folder.

Two processes training into one folder interleave run.log and overwrite each
other's checkpoints. The process that writes a run folder holds an exclusive
``flock`` on ``RUN/.lock`` for as long as it runs; the file records who holds
it, so a second ``run`` or ``run --resume`` is refused with one line naming
that process. The kernel drops the lock when its holder dies, however it
dies (SIGKILL included): a lock file left by a dead process is simply taken over.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from defectkit.errors import RunError

LOCK_FILE = ".lock"


class RunLock:
    """The exclusive lock on a run folder, held by the process that writes it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None
        #: who held the lock before, when it was taken over from a process that had died
        self.taken_over: dict | None = None

    def acquire(self, command: str = "") -> None:
        """Take the lock or raise a one-line RunError naming the process that holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunError(
                    f"{self.run_dir}: another defectkit process is writing this run folder ({_describe(holder)}); "
                    "wait for it to finish or stop it, then run again"
                ) from None
            # the holder may have removed the file between our open and our lock: then ours is a stale inode
            if _same_file(fd, self.path):
                break
            os.close(fd)
        previous = _read_holder(fd)
        self.taken_over = previous or None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (removed first, so nobody locks a file about to vanish)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path, command: str = "") -> Iterator[RunLock]:
    """Hold the lock of ``run_dir`` for the block; a folder created only to hold it is removed if left empty."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    try:
        lock.acquire(command)
    except BaseException:
        if created:
            _remove_if_empty(run_dir)
        raise
    try:
        yield lock
    finally:
        lock.release()
        if created:
            _remove_if_empty(run_dir)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 65536, 0).decode("utf-8") or "{}")
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "it has not said who it is yet"
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    started = f", started {holder['started']}" if holder.get("started") else ""
    command = f": {holder['command']}" if holder.get("command") else ""
    return where + started + command
