"""The diffusion plugin's stable public API for other plugins.

A plugin that loads the ``adapter`` artifact into a diffusers pipeline or finds earlier steps' outputs
the way diffusion's generators do (``defectkit_defectfill`` does) imports from here and nothing else of
``defectkit_diffusion`` except the tiny offline pipelines of :mod:`defectkit_diffusion.tiny`;
``tests/test_plugin_boundaries.py`` enforces it. Importing this module imports nothing heavy: each name
is imported on first use.

What it exports:

* the adapter: :class:`Adapter`, :func:`read_adapter`, :func:`apply_adapter`, ``ADAPTER_FILE`` (the
  ``adapter.json`` file name inside the folder);
* run folders: :func:`find_step_dir`, :func:`find_artifact_before`.

Backends, schedulers and ControlNet modalities are components: look them up by name in the registry
(``get_registry().get("model_backend", name)``), not through this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import lazy_exports

if TYPE_CHECKING:
    from defectkit_diffusion.adapter import ADAPTER_FILE, Adapter, apply_adapter, read_adapter
    from defectkit_diffusion.generate import find_artifact_before, find_step_dir

_SOURCES = {
    "ADAPTER_FILE": "defectkit_diffusion.adapter",
    "Adapter": "defectkit_diffusion.adapter",
    "apply_adapter": "defectkit_diffusion.adapter",
    "read_adapter": "defectkit_diffusion.adapter",
    "find_artifact_before": "defectkit_diffusion.generate",
    "find_step_dir": "defectkit_diffusion.generate",
}

__all__ = ["ADAPTER_FILE", "Adapter", "apply_adapter", "find_artifact_before", "find_step_dir", "read_adapter"]

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
