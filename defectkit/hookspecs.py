"""The plugin contract: every hook a defectkit plugin may implement.

A plugin is a module (or object) whose functions are decorated with
:data:`hookimpl` and named after the hooks below, registered through the
``defectkit`` entry-point group::

    [project.entry-points.defectkit]
    my_plugin = "my_package.hooks"

Component hooks return a list of :class:`~defectkit.components.Component`
records. They are called every time the registry is built, including for
``defectkit plugins`` and ``--help``, so a hooks module must import nothing
heavy (no torch): keep heavy code behind the component's ``factory`` string.

Every hook is documented in CONTRIBUTING.md; ``tests/test_hookspecs.py``
checks that each hook here has a test and a documented signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from defectkit.components import Component

hookspec = pluggy.HookspecMarker("defectkit")
hookimpl = pluggy.HookimplMarker("defectkit")


@hookspec
def defectkit_datasets() -> list[Component]:
    """Dataset formats a recipe's ``data.format`` can name (kind ``dataset``)."""


@hookspec
def defectkit_caption_providers() -> list[Component]:
    """Caption providers a ``caption`` step can use (kind ``caption_provider``)."""


@hookspec
def defectkit_trainers() -> list[Component]:
    """Trainers a ``train`` step can use (kind ``trainer``)."""


@hookspec
def defectkit_generators() -> list[Component]:
    """Image generators a ``generate`` step can use (kind ``generator``)."""


@hookspec
def defectkit_detectors() -> list[Component]:
    """Defect detectors a ``detect`` step can use (kind ``detector``)."""


@hookspec
def defectkit_model_backends() -> list[Component]:
    """Model backends (SD 1.5, SDXL, a ViT ...) other components load (kind ``model_backend``)."""


@hookspec
def defectkit_schedulers() -> list[Component]:
    """Diffusion noise schedulers, swapped by name (kind ``scheduler``)."""


@hookspec
def defectkit_controlnet_modalities() -> list[Component]:
    """ControlNet modalities: a preprocessor plus weights (kind ``controlnet_modality``)."""


@hookspec
def defectkit_metrics() -> list[Component]:
    """Metrics an ``evaluate`` step can use (kind ``metric``)."""


@hookspec(historic=True)
def defectkit_register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``defectkit`` CLI.

    Historic: a plugin registered after the CLI was built still gets the call.
    Import heavy modules inside the command functions, never at module level.
    """


#: hook name for each component kind
HOOK_FOR_KIND: dict[str, str] = {
    "dataset": "defectkit_datasets",
    "caption_provider": "defectkit_caption_providers",
    "trainer": "defectkit_trainers",
    "generator": "defectkit_generators",
    "detector": "defectkit_detectors",
    "model_backend": "defectkit_model_backends",
    "scheduler": "defectkit_schedulers",
    "controlnet_modality": "defectkit_controlnet_modalities",
    "metric": "defectkit_metrics",
}
