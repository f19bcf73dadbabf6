"""The diffusion plugin's stable public API for other plugins.

A plugin that loads the ``adapter`` artifact into a diffusers pipeline (``defectkit_defectfill`` does) imports from here and nothing else of
``defectkit_diffusion`` except the tiny offline pipelines of :mod:`defectkit_diffusion.tiny`;
``tests/test_plugin_boundaries.py`` enforces it. Importing this module imports nothing heavy: each name
is imported on first use.

What it exports:

* the adapter: :class:`Adapter`, :func:`read_adapter`, :func:`apply_adapter`, ``ADAPTER_FILE`` (the
  ``adapter.json`` file name inside the folder).

Earlier steps' outputs are read with the core's :class:`defectkit.rundir.RunDirectory`
(``find_step``, ``artifact_before``, which honours a step's ``inputs:``).

Backends, schedulers and ControlNet modalities are components: look them up by name in the registry
(``get_registry().get("model_backend", name)``), not through this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import lazy_exports

if TYPE_CHECKING:
    from defectkit_diffusion.adapter import ADAPTER_FILE, Adapter, apply_adapter, read_adapter

_SOURCES = {
    "ADAPTER_FILE": "defectkit_diffusion.adapter",
    "Adapter": "defectkit_diffusion.adapter",
    "apply_adapter": "defectkit_diffusion.adapter",
    "read_adapter": "defectkit_diffusion.adapter",
}

__all__ = ["ADAPTER_FILE", "Adapter", "apply_adapter", "read_adapter"]

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
