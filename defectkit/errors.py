"""Errors that reach the user as one line, with no traceback.

Anything a user can fix (a recipe, a path, a name) raises a subclass of
:class:`DefectkitError`; the CLI prints ``str(error)`` and exits with
``error.exit_code``. Bugs raise ordinary exceptions and keep their traceback.
"""

from __future__ import annotations


class DefectkitError(Exception):
    """A mistake the user can act on. The message is the whole story."""

    exit_code = 2


class RecipeError(DefectkitError):
    """A recipe that cannot be read or validated: names the file and key path."""


class RegistryError(DefectkitError):
    """An unknown or duplicated component name."""


class PluginLoadError(DefectkitError):
    """A plugin that failed to load, re-raised in strict mode."""


class DataError(DefectkitError):
    """A dataset that cannot be read as the recipe says: names the file."""


class RunError(DefectkitError):
    """A run directory that cannot be used as asked (exists, missing, changed)."""


class DiskFullError(RunError):
    """The disk filled up while writing: the run stays resumable once there is room."""

    exit_code = 1

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"no space left on device while writing {path}: free space, then run again with --resume")


class PluginError(DefectkitError):
    """An exception inside a plugin's code during a step: one line naming the plugin; the traceback is in run.log."""

    exit_code = 1
