"""What a component needs installed: its distribution's extra, read from the installed metadata.

A component names the extra of its distribution that holds its dependencies
(``Component(extra="decodiff")``); the requirement strings are read from the
distribution's metadata (``Requires-Dist: torch==2.15.0; extra == "torch"``),
so they cannot drift from ``pyproject.toml``. An extra may name other extras of
the same distribution (``defectkit[torch]``), followed to their requirements.
Nothing here imports the packages it checks: ``importlib.metadata`` reads
their installed versions.
"""

from __future__ import annotations

import functools
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


@functools.cache
def _declared(distribution: str) -> tuple[Requirement, ...]:
    """``distribution``'s ``Requires-Dist`` lines, parsed once per process (every extra filters the same list)."""
    try:
        lines = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return ()
    parsed = []
    for line in lines:
        try:
            parsed.append(Requirement(line))
        except InvalidRequirement:
            continue
    return tuple(parsed)


@functools.cache
def extra_requirements(distribution: str, extra: str) -> tuple[str, ...]:
    """The requirement strings of ``distribution[extra]`` (markers dropped), other extras followed; () if unknown."""
    own = canonicalize_name(distribution)
    found: list[str] = []
    for requirement in _declared(distribution):
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue  # a core dependency, or another extra's
        if canonicalize_name(requirement.name) == own:
            for inner in sorted(requirement.extras):
                found += [r for r in extra_requirements(distribution, inner) if r not in found]
            continue
        plain = Requirement(str(requirement))
        plain.marker = None
        if str(plain) not in found:
            found.append(str(plain))
    return tuple(found)


@functools.cache
def is_installed(distribution: str) -> bool:
    """Whether ``distribution`` has installed metadata."""
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def known_extras(distribution: str) -> tuple[str, ...]:
    """The extras ``distribution`` declares (``Provides-Extra``)."""
    try:
        return tuple(metadata.metadata(distribution).get_all("Provides-Extra") or ())
    except metadata.PackageNotFoundError:
        return ()


@functools.cache
def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (``None``: not installed); read once per process, as
    ``defectkit plugins`` asks about the same few packages for every component."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def unmet(requirements: tuple[str, ...] | list[str]) -> list[str]:
    """The requirements not satisfied by what is installed (missing, or a version outside the specifier)."""
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        installed = installed_version(canonicalize_name(requirement.name))
        if installed is None:
            missing.append(line)
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            missing.append(f"{line} (installed: {installed})")
    return missing


def install_command(distribution: str, extra: str | None, missing: list[str]) -> str:
    """What to run: ``pip install 'dist[extra]'``, or the missing requirements themselves when there is no extra."""
    if extra:
        return f"pip install '{distribution}[{extra}]'"
    return "pip install " + " ".join(f"'{line.split(' (installed')[0]}'" for line in missing)
