"""Every hook is exercised here, documented in CONTRIBUTING.md, and checked to be both."""

from __future__ import annotations

import inspect
from pathlib import Path

import click
import pytest

from defectkit import Component, hookimpl, hookspecs
from defectkit.components import KINDS
from defectkit.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, obj in vars(hookspecs).items() if name.startswith("defectkit_") and callable(obj))


def signature_line(name: str) -> str:
    """``def defectkit_trainers() -> list[Component]``, as CONTRIBUTING.md must show it."""
    signature = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"def {name}({params}) -> {signature.return_annotation}"


def test_every_kind_has_exactly_one_component_hook():
    assert sorted(hookspecs.HOOK_FOR_KIND) == sorted(KINDS)
    assert sorted([*hookspecs.HOOK_FOR_KIND.values(), "defectkit_register_commands"]) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    assert signature_line(hook) in contributing, f"document `{signature_line(hook)}` in CONTRIBUTING.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    # component hooks are each exercised by test_component_hooks_feed_the_registry (one case per kind);
    # any other hook needs a test function named after it
    test_names = [name for path in (ROOT / "tests").glob("test_*.py") for name in _test_names(path)]
    covered = hook in hookspecs.HOOK_FOR_KIND.values() or any(hook in name for name in test_names)
    assert covered, f"{hook} needs a test named after it"


def _test_names(path: Path) -> list[str]:
    import ast

    tree = ast.parse(path.read_text())
    return [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


@pytest.mark.parametrize("kind", KINDS)
def test_component_hooks_feed_the_registry(kind, register_plugin):
    hook = hookspecs.HOOK_FOR_KIND[kind]
    component = Component(kind=kind, name=f"test-{kind}", factory="builtins:repr", summary="a test")

    def implementation():
        return [component]

    implementation.__name__ = hook
    plugin = type("Plugin", (), {hook: staticmethod(hookimpl(implementation))})()
    info = register_plugin(plugin, f"plugin-{kind}")
    assert info.status == "ok", info.errors
    assert info.hooks == [hook]
    found = get_registry().get(kind, f"test-{kind}")
    assert found.plugin == f"plugin-{kind}"
    assert found.create() == "None", "the factory is called with the (absent) config"


def test_defectkit_register_commands_adds_commands_even_for_late_plugins(register_plugin, capsys):
    from defectkit.cli import cli, main

    class EarlyPlugin:
        @hookimpl
        def defectkit_register_commands(self, cli: click.Group) -> None:
            @cli.command(name="hello-early")
            def hello() -> None:
                click.echo("early says hello")

    register_plugin(EarlyPlugin(), "early")
    with pytest.raises(SystemExit):
        main(["hello-early"])
    assert "early says hello" in capsys.readouterr().out

    # historic: a plugin registered after the CLI was built still gets the call
    class LatePlugin:
        @hookimpl
        def defectkit_register_commands(self, cli: click.Group) -> None:
            cli.add_command(click.Command("hello-late", callback=lambda: click.echo("late says hello")))

    register_plugin(LatePlugin(), "late")
    assert "hello-late" in cli.commands
    for name in ("hello-early", "hello-late"):
        cli.commands.pop(name, None)


def test_a_failing_command_hook_is_isolated(register_plugin):
    class Broken:
        @hookimpl
        def defectkit_register_commands(self, cli):
            raise RuntimeError("cannot add")

    info = register_plugin(Broken(), "broken-commands")
    get_registry().register_commands(click.Group())
    assert info.status == "error" and "cannot add" in info.errors[0]
