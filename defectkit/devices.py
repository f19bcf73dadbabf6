"""Which torch device a component runs on: one rule for ``auto`` everywhere.

Importing this module imports no torch; :func:`resolve_device` does.
"""

from __future__ import annotations

from typing import Any


def resolve_device(device: Any = None, *, mps: bool = False):
    """``None`` or ``"auto"`` -> ``cuda`` when torch sees a GPU, else ``mps`` (only with ``mps=True``, when
    Apple's GPU is there), else ``cpu``; anything else (``"cuda:1"``, a ``torch.device``) as
    ``torch.device(device)``.

    ``mps`` is opt-in: a component says it runs on Apple's GPU (the diffusion pipelines do), the others stay
    on the CPU there, as ``StepContext.device`` does for a recipe's ``device: auto``.
    """
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)
