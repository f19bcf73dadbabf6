"""Hook implementations of the serve plugin. Light: imported by ``defectkit plugins`` and ``--help``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def defectkit_register_commands(cli: click.Group) -> None:
    from defectkit_serve.cli import serve_command  # click only: light

    cli.add_command(serve_command)
