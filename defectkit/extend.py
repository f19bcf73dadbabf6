"""Train longer without starting over: which recipe changes ``--resume`` accepts.

Seed 004's first advice is to continue training to more epochs. A resumed run
normally refuses any change to its recipe; it accepts exactly two kinds,
found by :func:`plan_extension`:

- a ``train`` step's length (``steps`` or ``epochs`` in its ``with:``) grown;
- new steps appended after the last one.

The run then continues each lengthened step from its last checkpoint (the
trainer goes on to the new length; how its learning-rate schedule continues
is the trainer's to state in the log), and runs again every finished step
after the first lengthened one, since what it read has changed; their old
folders move to ``RUN/superseded/<time>/`` rather than being deleted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

#: the options of a train step whose growth is an extension, not a change
LENGTH_KEYS = ("steps", "epochs")


@dataclass
class Extension:
    """What changed: per step index the lengths ``{key: (old, new)}``, and how many steps were appended."""

    lengths: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)
    appended: int = 0

    @property
    def first_rerun(self) -> int | None:
        """Index of the first finished step that runs again (the first lengthened one)."""
        return min(self.lengths) if self.lengths else None

    def describe(self, steps: list[dict[str, Any]]) -> list[str]:
        lines = []
        for index, changes in sorted(self.lengths.items()):
            kind = next(iter(steps[index]))
            grown = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changes.items())
            lines.append(f"steps[{index}].{kind}: {grown}: continues from its last checkpoint")
        if self.appended:
            lines.append(f"{self.appended} new step{'s' if self.appended > 1 else ''} appended")
        return lines


def plan_extension(before: dict[str, Any], now: dict[str, Any], first_difference) -> Extension:
    """The extension that turns resolved recipe ``before`` into ``now``; ``ValueError`` naming any other change.

    ``first_difference(a, b)`` is the engine's ``key.path: old -> new`` finder.
    """
    rest_before = {k: v for k, v in before.items() if k != "steps"}
    rest_now = {k: v for k, v in now.items() if k != "steps"}
    difference = first_difference(rest_before, rest_now)
    if difference:
        raise ValueError(difference)
    old_steps, new_steps = before.get("steps") or [], now.get("steps") or []
    if len(new_steps) < len(old_steps):
        raise ValueError(f"steps: {len(old_steps)} steps -> {len(new_steps)}: steps can be appended, never removed")
    extension = Extension(appended=len(new_steps) - len(old_steps))
    for index, (old, new) in enumerate(zip(old_steps, new_steps, strict=False)):
        kind = next(iter(old))
        if kind == "train" and kind in new:
            grown = _grown_lengths(old[kind].get("with") or {}, new[kind].get("with") or {}, index)
            if grown:
                extension.lengths[index] = grown
                old = _with_lengths(old, kind, grown)
        difference = first_difference(old, new, f"steps[{index}]")
        if difference:
            raise ValueError(difference)
    return extension


def _grown_lengths(old: dict[str, Any], new: dict[str, Any], index: int) -> dict[str, tuple[int, int]]:
    grown = {}
    for key in LENGTH_KEYS:
        before, after = old.get(key), new.get(key)
        if before == after or not isinstance(before, int) or not isinstance(after, int):
            continue
        if after < before:
            raise ValueError(
                f"steps[{index}].train.with.{key}: {before} -> {after}: a finished run can be trained longer, "
                "not shorter; start a new run with another --out"
            )
        grown[key] = (before, after)
    return grown


def _with_lengths(step: dict[str, Any], kind: str, grown: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """``step`` with its lengths set to the new ones, so that only other changes remain to be found."""
    step = copy.deepcopy(step)
    for key, (_, new) in grown.items():
        step[kind]["with"][key] = new
    return step
