"""The last validation pass: settings that are well-formed but cannot work on this machine or in any library.

Run after the options are built, before anything runs, so that ``validate``
and ``run --dry-run`` refuse them in one line: a non-finite number in any
option (``lr: .inf`` trains to NaN and crashes a later step), a seed outside
0 … 2³²−1 (NumPy's limit, the narrowest of the libraries seeded), and a
device the machine does not have (``cuda:7`` with one GPU would otherwise
train on the CPU while environment.json says cuda:7).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from defectkit.components import code_module
from defectkit.errors import RecipeError

if TYPE_CHECKING:
    from defectkit.recipe import ValidatedRecipe

#: every seeded library accepts 0 … 2**32 - 1 (NumPy's legacy seeding is the narrowest)
SEED_MAX = 2**32 - 1

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_feasible(validated: ValidatedRecipe) -> None:
    """Raise a one-line RecipeError for the first option that cannot work (see the module docstring)."""
    from defectkit.recipe import format_loc

    source = str(validated.path)
    for loc, value in _options(validated):
        key = next((part for part in reversed(loc) if isinstance(part, str)), "")
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"{source}: {format_loc(loc)}: {value} is not a finite number; give a finite value")
        if _is_seed(key) and isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= SEED_MAX:
            raise RecipeError(
                f"{source}: {format_loc(loc)}: seed {value} is outside 0 … {SEED_MAX} (2**32 - 1), "
                "the range every seeded library accepts"
            )
    check_device(validated.recipe.device, f"{source}: device")
    validated.notes.extend(code_notes(validated))


def code_notes(validated: ValidatedRecipe) -> list[str]:
    """One note per option that makes a plugin import and run code named by the recipe (see ``code_option``)."""
    from defectkit.recipe import format_loc

    notes = []
    for step in validated.steps:
        where: list[str | int] = ["steps", step.index, step.kind, "with"]
        names = [c.name for c in step.components] if step.kind == "evaluate" else [None] * len(step.configs)
        for name, config in zip(names, step.configs, strict=True):
            for loc, module, value in _code_options(config, [*where, *([name] if name else [])]):
                notes.append(
                    f"{format_loc(loc)}: this recipe runs code from module {module!r} ({value}); "
                    "run only recipes you trust as you trust code"
                )
    return notes


def _code_options(config: Any, loc: list[str | int]) -> Iterator[tuple[list[str | int], str, str]]:
    if not isinstance(config, BaseModel):
        return
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        module = code_module(value, info.json_schema_extra)
        if module is not None:
            yield [*loc, info.alias or name], module, value
        yield from _code_options(value, [*loc, info.alias or name])


def check_device(device: str, where: str) -> None:
    """Refuse a device string torch would not understand, or a device this machine does not have."""
    if not _DEVICE.match(device):
        raise RecipeError(f"{where}: {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if device in ("auto", "cpu"):
        return  # nothing to look up: torch stays unimported for these
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise RecipeError(f"{where}: 'mps' but this machine has no Apple GPU available to torch; use auto or cpu")
        return
    count = torch.cuda.device_count()
    if count == 0:
        raise RecipeError(f"{where}: {device!r} but this machine has no CUDA GPU that torch can use; use auto or cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        have = ", ".join(f"cuda:{i}" for i in range(count))
        raise RecipeError(
            f"{where}: {device!r} but this machine has {count} CUDA GPU{'s' if count > 1 else ''} ({have}); "
            "use one of those, cuda or auto"
        )


def _is_seed(key: str) -> bool:
    return key == "seed" or key.endswith("_seed")


def _options(validated: ValidatedRecipe) -> Iterator[tuple[list[str | int], Any]]:
    """Every leaf value of the recipe and of each built options model, with its key path as the recipe spells it."""
    yield from _leaves(validated.recipe.model_dump(by_alias=True), [])
    if isinstance(validated.data_config, BaseModel):
        yield from _leaves(validated.data_config.model_dump(), ["data", "with"])
    for step in validated.steps:
        where: list[str | int] = ["steps", step.index, step.kind]
        if isinstance(step.data_config, BaseModel):
            yield from _leaves(step.data_config.model_dump(), [*where, "data", "with"])
        names: Sequence[str | None] = (
            [c.name for c in step.components] if step.kind == "evaluate" else [None] * len(step.configs)
        )
        for name, config in zip(names, step.configs, strict=True):
            if isinstance(config, BaseModel):
                yield from _leaves(config.model_dump(), [*where, "with", *([name] if name else [])])


def _leaves(value: Any, loc: list[str | int]) -> Iterator[tuple[list[str | int], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, [*loc, str(key)])
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, [*loc, index])
    else:
        yield loc, value
