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
def extra_requirements(distribution: str, extra: str) -> tuple[str, ...]:
    """The requirement strings of ``distribution[extra]`` (markers dropped), other extras followed; () if unknown."""
    try:
        declared = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return ()
    own = canonicalize_name(distribution)
    found: list[str] = []
    for line in declared:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue  # a core dependency, or another extra's
        if canonicalize_name(requirement.name) == own:
            for inner in sorted(requirement.extras):
                found += [r for r in extra_requirements(distribution, inner) if r not in found]
            continue
        requirement.marker = None
        if str(requirement) not in found:
            found.append(str(requirement))
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


def unmet(requirements: tuple[str, ...] | list[str]) -> list[str]:
    """The requirements not satisfied by what is installed (missing, or a version outside the specifier)."""
    missing = []
    for line in requirements:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
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
