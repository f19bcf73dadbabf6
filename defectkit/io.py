"""Atomic file writes: a reader (or a resumed run) never sees half a file.

Everything is written to a temporary name in the same folder and renamed with
:func:`os.replace`, which is atomic on POSIX and Windows; an interrupted write
leaves the old file (or none), never a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from defectkit.errors import DiskFullError

# mkstemp creates files readable by their owner only; written files should get the
# usual permissions (0666 less the umask), like any file a program opens for writing.
# Reading the umask means setting it, so it is read once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    For libraries that want a file name (PIL ``save``, ``numpy.save``,
    ``safetensors.torch.save_file``)::

        with atomic_path(step_dir / "model.safetensors") as tmp:
            save_file(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as exc:
        _raise_if_disk_full(exc, path)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        _raise_if_disk_full(exc, path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` if the block succeeds.

    For checkpoints made of several files. An existing ``path`` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        _raise_if_disk_full(exc, path)
        raise
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            _rmtree(old)
        else:
            os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        _raise_if_disk_full(exc, path)
        raise
    finally:
        if tmp.exists():
            _rmtree(tmp)


#: below this much free space, a write that failed is taken to have failed for lack of space
LOW_SPACE_BYTES = 1024 * 1024

# the names atomic_path and atomic_dir give their temporary files: ".NAME." + mkstemp's 8 characters + ".tmp"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^/]*)?$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old$")


def is_disk_full(exc: BaseException, folder: str | Path) -> bool:
    """Whether ``exc`` means the disk of ``folder`` is full.

    ENOSPC (or EDQUOT) anywhere in the exception's chain; or, because some
    libraries turn it into another error (``torch.save`` raises RuntimeError
    "unexpected pos ..."), an OSError or RuntimeError while ``folder`` has
    almost no space left.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False


def _raise_if_disk_full(exc: BaseException, path: Path) -> None:
    if not isinstance(exc, DiskFullError) and is_disk_full(exc, path.parent):
        raise DiskFullError(path) from exc


def remove_leftovers(root: str | Path) -> list[Path]:
    """Remove the temporary files and folders of writes that were killed midway under ``root``; return them.

    Only call this while no other process writes under ``root`` (the run lock).
    An ``atomic_dir`` killed between its two renames leaves the previous version
    as ``.NAME.old`` and no ``NAME``: that version is put back, not removed.
    """
    removed: list[Path] = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            old = _OLD.match(name)
            if old and path.is_dir():
                original = path.with_name(old.group("name"))
                if original.exists():
                    _rmtree(path)
                    removed.append(path)
                else:
                    os.replace(path, original)
            elif _TEMPORARY.match(name):
                if path.is_dir() and not path.is_symlink():
                    _rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
        dirs[:] = [d for d in dirs if (Path(folder) / d).is_dir()]
    return removed


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_yaml(path: str | Path, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def read_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))
