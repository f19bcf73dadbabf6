"""defectkit: generate defects, train detectors on them, and measure the gain.

The public API for plugin authors is small and imports nothing heavy:

- :data:`hookimpl` marks hook implementations (see :mod:`defectkit.hookspecs`);
- :class:`Component` is the record component hooks return;
- :class:`StepContext` (in :mod:`defectkit.run`) is what a step's component receives;
- :mod:`defectkit.io` writes files atomically; :mod:`defectkit.data` holds the sample type;
- :mod:`defectkit.anomaly_maps` writes a detector's maps and scores; :mod:`defectkit.overlays` draws its overlays;
- :mod:`defectkit.testing` is a pytest plugin with fixtures and contract checks.
"""

from defectkit.components import KINDS, Component, Consumes
from defectkit.errors import DefectkitError
from defectkit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["KINDS", "Component", "Consumes", "DefectkitError", "__version__", "hookimpl"]
