"""Third-party libraries during a run: seeded when they load, quiet unless asked.

The engine imports no deep-learning library itself, so a numpy-only step
starts without paying for torch. Libraries a step imports are configured the
moment they are first imported (wrapt's post-import hooks; the standard
library has none since PEP 369 was withdrawn):

- torch is seeded with the step's seed, exactly as if it had been imported
  before the step began;
- transformers, diffusers and datasets stop drawing their own progress bars
  ("Writing model shards", "Loading weights") and send their warnings through
  Python logging instead of their private stderr handlers.

While a run is active, warnings of libraries (Python ``warnings`` and records
of non-defectkit loggers, e.g. bitsandbytes' "Failed to load CPU
gemm_4bit_forward" on every CPU import) go to ``run.log`` only. ``--verbose``
shows them on the console too and leaves the libraries' bars alone.
"""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import wrapt

#: the seed the current step runs with; torch gets it on import while a step runs
_state: dict[str, Any] = {"seed": None, "active": False, "verbose": False}
#: the transformers / diffusers modules quieted during the current run, restored after it
_quieted: list[Any] = []
_hooks_registered = False


def _seed_torch(torch: Any) -> None:
    seed = _state["seed"]
    if seed is not None:
        torch.manual_seed(seed)


def _quiet_hf(module: Any) -> None:
    """transformers / diffusers: warnings through Python logging, no progress bars (unless verbose)."""
    if _state["verbose"] or not _state["active"] or module in _quieted:
        return
    hf_logging = getattr(getattr(module, "utils", None), "logging", None)
    if hf_logging is None:
        return
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()
    _quieted.append(module)


def _restore_hf() -> None:
    while _quieted:
        module = _quieted.pop()
        if module.__name__ == "datasets":
            module.enable_progress_bars()
            continue
        hf_logging = module.utils.logging
        hf_logging.enable_default_handler()
        hf_logging.disable_propagation()
        hf_logging.enable_progress_bar()


def _quiet_datasets(module: Any) -> None:
    if not _state["verbose"] and _state["active"] and module not in _quieted and hasattr(module, "disable_progress_bars"):
        module.disable_progress_bars()
        _quieted.append(module)


def _register_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    # wrapt runs a hook at once when the module is already imported, else right after its first import
    wrapt.register_post_import_hook(_seed_torch, "torch")
    wrapt.register_post_import_hook(_quiet_hf, "transformers")
    wrapt.register_post_import_hook(_quiet_hf, "diffusers")
    wrapt.register_post_import_hook(_quiet_datasets, "datasets")
    _hooks_registered = True


def seed_everything(seed: int) -> None:
    """Seed Python and NumPy now, and torch now or whenever the step first imports it."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    _state["seed"] = seed
    _register_hooks()
    if "torch" in sys.modules:
        _seed_torch(sys.modules["torch"])


class _NotDefectkit(logging.Filter):
    """defectkit's own records reach run.log through their own handler; keep only the libraries'."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("defectkit")


class LibraryOutput:
    """Route libraries' warnings to ``run.log`` (and the console with ``verbose``) for one run."""

    def __init__(self, file_handler: logging.Handler | None, console_handler: logging.Handler | None, verbose: bool):
        self._handlers = [h for h in (file_handler, console_handler if verbose else None) if h is not None]
        self.verbose = verbose
        self._root = logging.getLogger()
        self._installed: list[logging.Handler] = []

    def __enter__(self) -> LibraryOutput:
        _state["verbose"] = self.verbose
        _state["active"] = True
        _register_hooks()
        for handler in self._handlers:
            routed = _Routed(handler)
            routed.addFilter(_NotDefectkit())
            self._root.addHandler(routed)
            self._installed.append(routed)
        if not self.verbose:
            logging.captureWarnings(True)
            # libraries imported before the run (a test session, a notebook) are quieted now
            for name, quiet in (("transformers", _quiet_hf), ("diffusers", _quiet_hf), ("datasets", _quiet_datasets)):
                if name in sys.modules:
                    quiet(sys.modules[name])
        return self

    def __exit__(self, *exc: object) -> None:
        for handler in self._installed:
            self._root.removeHandler(handler)
        self._installed.clear()
        if not self.verbose:
            logging.captureWarnings(False)
        _restore_hf()
        _state.update(seed=None, active=False, verbose=False)


class _Routed(logging.Handler):
    """Forwards to a handler owned by the run (so closing the run's handlers needs no bookkeeping here)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)
