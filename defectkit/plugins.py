"""Plugin discovery and the component registry.

Every plugin, first-party or third-party, is found through the ``defectkit``
entry-point group. Each entry point is loaded in its own ``try``: a plugin
that fails to import, declares a misspelt hook, or whose hook raises is
recorded with its distribution, version, error and a hint, and everything
else keeps working (pluggy's own ``load_setuptools_entrypoints`` would let
one broken plugin take down the whole CLI).

Environment:
    ``DEFECTKIT_LOAD_PLUGINS=a,b``: load only these plugins (entry-point or
    distribution names); set but empty: load none.
    ``DEFECTKIT_STRICT_PLUGINS=1``: re-raise the first plugin failure, for
    plugin developers.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import pluggy

from defectkit import hookspecs
from defectkit.components import KINDS, Component
from defectkit.errors import PluginLoadError, RegistryError

ENTRY_POINT_GROUP = "defectkit"
#: a hooks module that takes longer than this to import is named on every command (it slows down --help)
SLOW_IMPORT_SECONDS = 1.0


@dataclass
class PluginInfo:
    """What ``defectkit plugins`` reports about one plugin."""

    name: str
    distribution: str = ""
    version: str = ""
    entry_point: str = ""
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    status: str = "ok"  # ok | error
    errors: list[str] = field(default_factory=list)
    hint: str = ""
    #: seconds to import the entry point and call its component hooks (None: not loaded from an entry point)
    import_seconds: float | None = None

    def fail(self, error: str, hint: str = "") -> None:
        self.status = "error"
        self.errors.append(error)
        self.hint = self.hint or hint

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "hooks": sorted(self.hooks),
            "components": {k: sorted(v) for k, v in self.components.items()},
            "status": self.status,
            "error": "; ".join(self.errors) or None,
            "hint": self.hint or None,
            "import_seconds": None if self.import_seconds is None else round(self.import_seconds, 3),
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _hint_for(exc: BaseException, distribution: str) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return f"install the missing module ({exc.name!r}) or reinstall {distribution}"
    return f"upgrade or reinstall {distribution}, or leave it out with DEFECTKIT_LOAD_PLUGINS"


class Registry:
    """All loaded plugins and the components they provide."""

    def __init__(self, strict: bool | None = None) -> None:
        self.strict = _env_flag("DEFECTKIT_STRICT_PLUGINS") if strict is None else strict
        self.pm = pluggy.PluginManager("defectkit")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._objects: dict[str, object] = {}
        self._components: dict[tuple[str, str], list[Component]] = defaultdict(list)
        self._cli: Any = None

    # -- loading -----------------------------------------------------------------

    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Load every plugin of the ``defectkit`` entry-point group (or ``only`` those named)."""
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else ""
            # The same distribution can be visible twice on sys.path (an editable
            # install plus a build dir); the first one wins, as for imports.
            if (dist_name, ep.name) in seen:
                continue
            seen.add((dist_name, ep.name))
            if only is not None and ep.name not in only and dist_name not in only:
                continue
            info = PluginInfo(
                name=ep.name,
                distribution=dist_name,
                version=dist.version if dist is not None else "",
                entry_point=f"{ep.name} = {ep.value}",
            )
            started = time.perf_counter()
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the CLI
                info.import_seconds = time.perf_counter() - started
                info.fail(_describe(exc), _hint_for(exc, dist_name or ep.name))
                self._record(info, exc)
                continue
            self.add_plugin(obj, info)
            info.import_seconds = time.perf_counter() - started

    def add_plugin(self, obj: object, info: PluginInfo | str) -> PluginInfo:
        """Register a plugin object (a module or any object with hook implementations).

        Public so tests and applications can add plugins that are not installed;
        see :func:`defectkit.testing.register_plugin`.
        """
        if isinstance(info, str):
            info = PluginInfo(name=info, distribution=info)
        if info.name in self.plugins:
            raise ValueError(f"a plugin named {info.name!r} is already registered")
        try:
            self.pm.register(obj, name=info.name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            info.fail(str(exc), self._hook_hint(str(exc)))
            self._record(info, exc)
            return info
        self._objects[info.name] = obj
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(obj) or [])
        self._collect_components(obj, info)
        self.plugins[info.name] = info
        if self._cli is not None:
            self._call_register_commands(obj, info)
        if self.strict and info.status == "error":
            raise PluginLoadError(f"plugin {info.name}: {'; '.join(info.errors)}")
        return info

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and forget its components."""
        obj = self._objects.pop(name, None)
        if obj is not None and self.pm.is_registered(obj):
            self.pm.unregister(obj)
        info = self.plugins.pop(name, None)
        if info is None:
            return
        for key in list(self._components):
            self._components[key] = [c for c in self._components[key] if c.plugin != info.name]
            if not self._components[key]:
                del self._components[key]

    def _record(self, info: PluginInfo, exc: BaseException) -> None:
        self.plugins[info.name] = info
        if self.strict:
            raise PluginLoadError(f"plugin {info.name} ({info.distribution} {info.version}): {_describe(exc)}") from exc

    @staticmethod
    def _hook_hint(message: str) -> str:
        known = [name for name in dir(hookspecs) if name.startswith("defectkit_")]
        for word in message.replace("'", " ").replace('"', " ").split():
            if word.startswith("defectkit_") and word not in known:
                close = difflib.get_close_matches(word, known, n=1)
                if close:
                    return f"rename hook {word!r} to {close[0]!r}"
        return "hook implementations must match a hook in defectkit.hookspecs (see CONTRIBUTING.md)"

    def _impls(self, obj: object, hook_name: str) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return []
        return [impl for impl in caller.get_hookimpls() if impl.plugin is obj]

    def _collect_components(self, obj: object, info: PluginInfo) -> None:
        for kind, hook_name in hookspecs.HOOK_FOR_KIND.items():
            for impl in self._impls(obj, hook_name):
                try:
                    returned = impl.function()
                    components = self._check_components(returned, kind, hook_name)
                except Exception as exc:  # one bad hook must not hide the others
                    info.fail(f"{hook_name}: {_describe(exc)}", f"fix {hook_name} in {info.distribution or info.name}")
                    if self.strict:
                        raise PluginLoadError(f"plugin {info.name}: {hook_name}: {_describe(exc)}") from exc
                    continue
                for component in components:
                    component = replace(component, plugin=info.name, distribution=info.distribution)
                    info.components.setdefault(kind, []).append(component.name)
                    self._add_component(component, info)

    @staticmethod
    def _check_components(returned: Any, kind: str, hook_name: str) -> list[Component]:
        if returned is None:
            return []
        if not isinstance(returned, (list, tuple)):
            raise TypeError(f"must return a list of Component, got {type(returned).__name__}")
        for item in returned:
            if not isinstance(item, Component):
                raise TypeError(f"must return Component records, got {type(item).__name__}")
            if item.kind != kind:
                raise TypeError(f"returned {item.qualified_name}; {hook_name} returns kind {kind!r} only")
        return list(returned)

    def _add_component(self, component: Component, info: PluginInfo) -> None:
        key = (component.kind, component.name)
        existing = self._components[key]
        existing.append(component)
        if len(existing) > 1:
            owners = " and ".join(sorted(self._owner(c) for c in existing))
            message = f"{component.kind} {component.name!r} is registered by both {owners}"
            for c in existing:
                other = self.plugins.get(c.plugin)
                if other is not None and message not in other.errors:
                    other.fail(message, "uninstall one of them, or rename the component")
            if message not in info.errors:
                info.fail(message, "uninstall one of them, or rename the component")
            if self.strict:
                raise RegistryError(message)

    def _owner(self, component: Component) -> str:
        info = self.plugins.get(component.plugin)
        if info is None:
            return component.plugin
        return f"{info.distribution or info.name} {info.version}".strip()

    # -- commands ----------------------------------------------------------------

    def register_commands(self, cli: Any) -> None:
        """Let every plugin add CLI commands; later plugins are called on registration."""
        self._cli = cli
        for name, obj in list(self._objects.items()):
            self._call_register_commands(obj, self.plugins[name])

    def _call_register_commands(self, obj: object, info: PluginInfo) -> None:
        for impl in self._impls(obj, "defectkit_register_commands"):
            try:
                impl.function(cli=self._cli)
            except Exception as exc:
                info.fail(f"defectkit_register_commands: {_describe(exc)}", f"fix the commands of {info.name}")
                if self.strict:
                    raise PluginLoadError(f"plugin {info.name}: {_describe(exc)}") from exc

    # -- queries -----------------------------------------------------------------

    def components(self, kind: str | None = None) -> list[Component]:
        """Every unambiguous component, optionally of one kind, sorted by kind then name."""
        found = [c[0] for (k, _), c in self._components.items() if len(c) == 1 and (kind is None or k == kind)]
        return sorted(found, key=lambda c: (KINDS.index(c.kind), c.name))

    def names(self, kind: str) -> list[str]:
        return [c.name for c in self.components(kind)]

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``, or a :class:`RegistryError` that lists the choices."""
        if kind not in KINDS:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        found = self._components.get((kind, name), [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            owners = " and ".join(sorted(self._owner(c) for c in found))
            raise RegistryError(f"{kind} {name!r} is registered by both {owners}: uninstall one of them")
        raise RegistryError(unknown_name_message(kind, name, self.names(kind)))

    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.status != "ok"]

    def slow(self, seconds: float = SLOW_IMPORT_SECONDS) -> list[PluginInfo]:
        """Plugins whose import took longer than ``seconds``: their hooks module imports something heavy."""
        return [p for p in self.plugins.values() if (p.import_seconds or 0.0) > seconds]


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """``unknown trainer 'lroa'; did you mean 'lora'? installed: dora, lora``."""
    label = kind.replace("_", " ")
    if not choices:
        return f"unknown {label} {name!r}: no {label} is installed (see `defectkit plugins`)"
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    guess = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {label} {name!r}{guess} installed: {', '.join(choices)}"


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def load_registry(strict: bool | None = None) -> Registry:
    """A fresh registry from the installed entry points, honouring the environment."""
    registry = Registry(strict=strict)
    selection = os.environ.get("DEFECTKIT_LOAD_PLUGINS")
    only = None if selection is None else {s.strip() for s in selection.split(",") if s.strip()}
    registry.load_entry_points(only=only)
    return registry


def reset_registry() -> None:
    """Forget the process-wide registry (tests; after installing a plugin)."""
    global _registry
    _registry = None


def torch_imported() -> bool:
    """True when torch is in ``sys.modules``; the listing path must keep this False."""
    return "torch" in sys.modules
