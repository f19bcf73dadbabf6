"""The light record every component hook returns, and late resolution of its parts.

A :class:`Component` holds only strings, so listing hundreds of them imports
nothing heavy. ``factory`` and ``config`` are import strings
(``"package.module:attribute"``) resolved when a recipe actually uses the
component: the config model when a recipe is validated, the factory when a
step runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

#: The component kinds, in the order ``defectkit plugins`` shows them. Each has
#: one hook in :mod:`defectkit.hookspecs` named ``defectkit_<kind>s``.
KINDS: tuple[str, ...] = (
    "dataset",
    "caption_provider",
    "trainer",
    "generator",
    "detector",
    "model_backend",
    "scheduler",
    "controlnet_modality",
    "metric",
)


@dataclass(frozen=True)
class Consumes:
    """An artifact a component reads from an earlier step (``ctx.artifact(name)``).

    Attributes:
        artifact: the artifact's name (``checkpoint``, ``anomaly_maps``, ``adapter`` ...).
        producers: names of the components whose artifact this one can read
            (a decodiff detector reads only decodiff checkpoints); empty: any.
        required: ``False`` when the component can do without it (or has an
            option that replaces it, such as a checkpoint path); validation then
            only checks the producer when there is one.
    """

    artifact: str
    producers: tuple[str, ...] = ()
    required: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "producers", tuple(self.producers))


@dataclass(frozen=True)
class Component:
    """One named, configurable piece a recipe can ``use:``.

    Attributes:
        kind: one of :data:`KINDS`.
        name: unique within its kind; what a recipe writes after ``use:``.
        factory: import string of a callable taking the validated config model
            instance and returning the component object (see
            CONTRIBUTING.md, "What a component's object does", for what each
            kind's object provides).
        config: import string of a pydantic model for the ``with:`` block, or
            ``None`` when the component takes no options.
        summary: one line for ``defectkit plugins``.
        extra: the extra of the plugin's distribution that holds what the
            factory needs (``"decodiff"`` for ``defectkit[decodiff]``); its
            requirements are read from the installed metadata
            (:mod:`defectkit.requirements`), shown by ``defectkit plugins`` and
            checked when a recipe is validated. ``None``: the core suffices.
        requires: further requirement strings (PEP 508), beyond the extra's,
            for a plugin that declares no extras.
        produces: the artifacts its step declares with ``ctx.add_artifact``;
            ``None`` (the default): not declared, so validation cannot look
            past this step for a producer and leaves the check to the run.
        consumes: the artifacts it reads from earlier steps (:class:`Consumes`),
            checked by ``defectkit validate`` against the steps before it.
        plugin: the plugin (entry-point name) that registered it; filled in by the registry.
        distribution: the distribution of that plugin; filled in by the registry.
    """

    kind: str
    name: str
    factory: str
    config: str | None = None
    summary: str = ""
    requires: tuple[str, ...] = field(default_factory=tuple)
    produces: tuple[str, ...] | None = None
    consumes: tuple[Consumes, ...] = field(default_factory=tuple)
    plugin: str = ""
    extra: str | None = None
    distribution: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"component {self.name!r}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a {self.kind} component needs a non-empty string name")
        for label, target in (("factory", self.factory), ("config", self.config)):
            if target is not None and ":" not in target:
                raise ValueError(
                    f"{self.kind} {self.name!r}: {label} must be an import string 'module:attribute', got {target!r}"
                )
        object.__setattr__(self, "requires", tuple(self.requires))
        if self.produces is not None:
            object.__setattr__(self, "produces", tuple(self.produces))
        consumes = tuple(Consumes(c) if isinstance(c, str) else c for c in self.consumes)
        if not all(isinstance(c, Consumes) for c in consumes):
            raise ValueError(f"{self.kind} {self.name!r}: consumes must hold Consumes records or artifact names")
        object.__setattr__(self, "consumes", consumes)

    @property
    def qualified_name(self) -> str:
        return f"{self.kind}:{self.name}"

    def requirements(self) -> tuple[str, ...]:
        """Everything the factory needs: the extra's requirements (from the metadata) and ``requires``."""
        from defectkit.requirements import extra_requirements

        found = extra_requirements(self.owner, self.extra) if self.extra and self.owner else ()
        return found + tuple(r for r in self.requires if r not in found)

    @property
    def owner(self) -> str:
        """The distribution whose extras ``extra`` names (a first-party plugin registered by hand: defectkit)."""
        from defectkit.requirements import is_installed

        if self.distribution and is_installed(self.distribution):
            return self.distribution
        return "defectkit" if self.factory.startswith("defectkit") else self.distribution

    def unmet_requirements(self) -> list[str]:
        """The requirements that are not installed (or at a version outside their specifier)."""
        from defectkit.requirements import unmet

        return unmet(self.requirements())

    def install_hint(self) -> str:
        """``pip install 'defectkit[decodiff]'``: what installs what this component lacks ('' when nothing)."""
        from defectkit.requirements import install_command

        missing = self.unmet_requirements()
        return install_command(self.owner or self.plugin, self.extra, missing) if missing else ""

    def load_config_model(self) -> type | None:
        """Import and return the pydantic config model (``None`` if it takes no options)."""
        return resolve(self.config) if self.config else None

    def load_factory(self) -> Any:
        """Import and return the factory callable."""
        return resolve(self.factory)

    def build_config(self, options: dict[str, Any] | None = None) -> Any:
        """Validate ``options`` against the config model and return the instance."""
        model = self.load_config_model()
        if model is None:
            if options:
                raise ValueError(f"{self.qualified_name} takes no options, got {sorted(options)}")
            return None
        return model.model_validate(options or {})

    def create(self, options: dict[str, Any] | None = None) -> Any:
        """Build the config from ``options`` and call the factory with it."""
        return self.load_factory()(self.build_config(options))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "factory": self.factory,
            "config": self.config,
            "summary": self.summary,
            "extra": self.extra,
            "requires": list(self.requirements()),
            "missing": self.unmet_requirements(),
            "produces": None if self.produces is None else list(self.produces),
            "consumes": [
                {"artifact": c.artifact, "producers": list(c.producers), "required": c.required} for c in self.consumes
            ],
            "plugin": self.plugin,
            "distribution": self.distribution,
        }


#: the ``json_schema_extra`` key that marks an option whose value may be an import string the plugin runs
CODE_OPTION_KEY = "defectkit_runs_code"


def code_option(*reserved_prefixes: str) -> dict[str, Any]:
    """``json_schema_extra`` for an option that may name code to import (``package.module:factory``).

    ``defectkit validate`` and ``run`` then say that the recipe runs code from
    that module. ``reserved_prefixes`` are value forms with a colon that are
    not import strings (``"timm:"`` for ``timm:NAME``)::

        extractor: str = Field("alex", json_schema_extra=code_option("timm:", "torchvision:"))
    """
    return {CODE_OPTION_KEY: list(reserved_prefixes)}


def code_module(value: Any, extra: Any) -> str | None:
    """The module an option's value imports, when the option is a :func:`code_option` and the value names code."""
    if not isinstance(extra, dict) or CODE_OPTION_KEY not in extra or not isinstance(value, str):
        return None
    if ":" not in value or value.startswith(tuple(extra[CODE_OPTION_KEY])):
        return None
    return value.partition(":")[0]


def resolve(import_string: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr_path = import_string.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def lazy_exports(module: str, sources: dict[str, str]):
    """``(__getattr__, __dir__)`` for a module that re-exports names from others on first use (PEP 562).

    A plugin's public ``api`` module lists ``{name: module it lives in}``; importing the api module then
    imports nothing, and ``from my_plugin.api import Heavy`` imports only ``Heavy``'s module::

        __all__ = ["Heavy", "light"]
        __getattr__, __dir__ = lazy_exports(__name__, {"Heavy": "my_plugin.work", "light": "my_plugin.config"})

    Each name is looked up once and then cached in the module; a name not in ``sources`` is an
    ``AttributeError`` as for any module.
    """
    namespace = importlib.import_module(module).__dict__

    def __getattr__(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *sources})

    return __getattr__, __dir__
