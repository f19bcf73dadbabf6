"""Names from data that become paths, and paths that must stay inside a folder.

A dataset is not trusted: a label ``../../tmp/x`` in a label file, a class
name with a slash, or a symlink pointing out of the dataset must not make a
step read or write outside its folders. Readers check every name they take
from data with :func:`check_name`; writers build every path that contains
such a name with :func:`safe_join`, which refuses one that leaves its base.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from defectkit.errors import DataError, RunError


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one file or folder name, or ``None`` when it can."""
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return "it names a folder relative to another"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "it contains a control character"
    if os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return "it is an absolute path"
    return None


def check_name(name: str, where: str, what: str = "name") -> str:
    """``name`` if it is a plain file or folder name, else a one-line DataError.

    ``where`` says where the name was read (``labels.txt:12``), ``what`` what it
    is (``defect type``): no separators, no ``..``, not absolute, no control characters.
    """
    problem = name_problem(name)
    if problem is not None:
        raise DataError(
            f"{where}: {what} {name!r} cannot be used as a file or folder name ({problem}); "
            "use letters, digits, '-', '_' and '.'"
        )
    return name


def is_inside(path: str | Path, base: str | Path) -> bool:
    """Whether ``path`` lies in ``base`` once ``..`` and symlinks are resolved."""
    resolved, root = Path(path).resolve(), Path(base).resolve()
    return resolved == root or root in resolved.parents


def safe_join(base: str | Path, *parts: str | Path) -> Path:
    """``base / parts``, refused with a one-line RunError when the result would lie outside ``base``.

    Every path a step writes that contains a name taken from data goes through here.
    """
    path = Path(base).joinpath(*parts)
    if any(Path(p).is_absolute() for p in parts) or not is_inside(path, base):
        raise RunError(f"refusing to write {path}: it lies outside {base} (a name from the data leads out of it)")
    return path
