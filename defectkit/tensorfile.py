"""Reading checkpoint files safely, with one line naming a file that cannot be read.

``.safetensors`` files are read with safetensors; anything else with
``torch.load(weights_only=True)``, which refuses pickled Python objects. A
file that is damaged, truncated or holds more than tensors (a pickle in place
of a checkpoint) is a :class:`~defectkit.errors.DataError` naming it, never a
traceback that suggests ``weights_only=False``: defectkit does not execute
code from files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectkit.errors import DataError


def load_tensors(path: str | Path, map_location: str = "cpu") -> Any:
    """The tensors (a state dict, or a dict of tensors and plain values) stored in ``path``."""
    import pickle

    import torch
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file is missing")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device=map_location)
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch words every refusal of weights_only=True (a pickle of objects, or no pickle at all) alike
        raise DataError(
            f"{path}: not a tensor checkpoint defectkit can load safely (damaged, or holding Python objects "
            "beyond tensors, which defectkit never loads: that would run code from the file); use a checkpoint "
            "written by defectkit, or a state dict saved with torch.save or safetensors"
        ) from None
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DataError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: BaseException) -> str:
    # the first sentence: torch's messages go on for several
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")
    return f"{path}: cannot be read as a checkpoint ({reason}); it is damaged or not a checkpoint"
