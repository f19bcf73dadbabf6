"""The serve plugin's stable public API for other plugins.

A generator or detector plugin that tests its component in the web UI (the Generate tab driven against
its own tiny run) imports from here and nothing else of ``defectkit_serve``;
``tests/test_plugin_boundaries.py`` enforces it. Importing this module imports neither gradio nor torch:
each name is imported on first use.

What it exports:

* :func:`find_servable`: a run directory's servable detect and generate steps;
* :class:`GenerateTab` and :class:`ServeOptions`: the Generate tab's back end and how serve runs;
* ``MODELS``: the cache of opened predictors and sessions (``MODELS.clear()`` between tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import lazy_exports

if TYPE_CHECKING:
    from defectkit_serve.app import GenerateTab, ServeOptions, find_servable
    from defectkit_serve.inspectors import MODELS

_SOURCES = {
    "GenerateTab": "defectkit_serve.app",
    "ServeOptions": "defectkit_serve.app",
    "find_servable": "defectkit_serve.app",
    "MODELS": "defectkit_serve.inspectors",
}

__all__ = ["MODELS", "GenerateTab", "ServeOptions", "find_servable"]

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)
