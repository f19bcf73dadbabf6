"""The base of every component's options model (a recipe's ``with:`` block). Light: pydantic only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictOptions(BaseModel):
    """A pydantic model that refuses unknown keys: a misspelt option is an error naming the key, never
    silently ignored (``recipe.yaml: steps[2].train.with.rnak: Extra inputs are not permitted``).

    Subclass it for a component's config model; a subclass may add to ``model_config``
    (``ConfigDict(populate_by_name=True)``), which pydantic merges with ``extra="forbid"``.
    """

    model_config = ConfigDict(extra="forbid")
