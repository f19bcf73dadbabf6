"""Pieces every reader shares: a dataset of sample lists, and problem reporting."""

from __future__ import annotations

import difflib
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from defectkit.data.sample import Sample
from defectkit.errors import DataError
from defectkit.pathsafe import is_inside, name_problem

log = logging.getLogger("defectkit.data")

#: the file suffixes (lower case) read as images wherever a folder of images is listed: datasets, mask
#: folders, inference inputs, uploads
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ListDataset:
    """A dataset whose samples are known up front, per split."""

    def __init__(self, splits: dict[str, list[Sample]], name: str = "", problems: list | None = None) -> None:
        self._splits = splits
        self.name = name
        #: (kind, message) of every sample skipped under on_error=warn
        self.problems: list[tuple[str, str]] = problems or []

    def samples(self, split: str) -> list[Sample]:
        return list(self._splits.get(split, []))


class Problems:
    """Collects what is wrong with a dataset.

    ``on_error="raise"`` raises the first problem as a DataError. ``"warn"``
    keeps going, the caller skips the sample, and :meth:`finish` logs one
    warning with counts per kind of problem: nothing is dropped silently.
    """

    def __init__(
        self, on_error: str = "raise", dataset: str = "", root: Path | None = None, follow_symlinks: bool = False
    ) -> None:
        self.on_error = on_error
        self.dataset = dataset
        #: the dataset's folder: no file outside it is read (through symlinks only with follow_symlinks)
        self.root = root
        self.follow_symlinks = follow_symlinks
        self.found: list[tuple[str, str]] = []  # (kind, message)

    def add(self, kind: str, message: str) -> None:
        if self.on_error == "raise":
            raise DataError(message + ("" if "on_error" in message else " (or set data.with.on_error=warn to skip such samples)"))
        self.found.append((kind, message))

    def outside_root(self, path: Path) -> bool:
        """True, with a recorded problem, when ``path`` leads out of the dataset's root.

        A path that leaves it by name (``..``, absolute) is always refused; one that leaves it through a
        symlink only unless ``follow_symlinks``.
        """
        if self.root is None:
            return False
        root = Path(os.path.abspath(self.root))
        lexical = Path(os.path.abspath(path))
        if lexical != root and root not in lexical.parents:
            self.add("paths outside the dataset", f"{path}: lies outside the dataset root {root}")
            return True
        if not self.follow_symlinks and not is_inside(path, root):
            self.add(
                "symlinks leaving the dataset",
                f"{path}: a symlink leads out of the dataset root {root} (to {Path(path).resolve()}); "
                "copy the file into the dataset, or set data.with.follow_symlinks: true",
            )
            return True
        return False

    def unsafe_name(self, name: str, where: str, what: str) -> bool:
        """True, with a recorded problem, when ``name`` (read from the data) cannot be a file or folder name."""
        problem = name_problem(name)
        if problem is None:
            return False
        self.add(
            "names that cannot be paths",
            f"{where}: {what} {name!r} cannot be used as a file or folder name ({problem}); "
            "use letters, digits, '-', '_' and '.'",
        )
        return True

    def finish(self, kept: int) -> None:
        if not self.found:
            return
        counts = Counter(kind for kind, _ in self.found)
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
        log.warning("%s: skipped %d sample(s) (%s); kept %d. First: %s", self.dataset, len(self.found), summary, kept, self.found[0][1])


def require_dir(path: Path, what: str, hint: str = "") -> Path:
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist{'; ' + hint if hint else ''}")
    if not path.is_dir():
        raise DataError(f"{path}: {what} is not a folder")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files ignored)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def pick_categories(root: Path, wanted: str | list[str] | None, marker: str) -> list[str]:
    """Category folders under ``root`` that contain ``marker``; check the wanted ones exist."""
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / marker).exists())
    if wanted is None:
        if not available:
            raise DataError(f"{root}: no category folder with {marker}/ inside; is data.root the dataset's top folder?")
        return available
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"{root / name}: no such category{guess} available: {', '.join(available) or 'none'}")
    return names


def sizes_match(image: Path, mask: Path) -> str | None:
    """A problem message when a mask's size differs from its image's, else None."""
    from defectkit.data.sample import image_size

    image_wh, mask_wh = image_size(image), image_size(mask)
    if image_wh != mask_wh:
        return (
            f"{mask}: mask is {mask_wh[0]}x{mask_wh[1]} but its image {image.name} is {image_wh[0]}x{image_wh[1]}; "
            "masks must have their image's size (they are never resized, which would dilate them)"
        )
    return None


def count_by(samples: Iterable[Sample]) -> Counter:
    return Counter((s.split, s.object_class, s.defect_type) for s in samples)
