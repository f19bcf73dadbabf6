"""Options of the ``pixel_zscore`` detector (a recipe's ``with:`` block)."""

from pydantic import BaseModel, ConfigDict, Field


class PixelZScoreConfig(BaseModel):
    # extra="forbid": a misspelt option is an error naming the key, never silently ignored
    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, ge=8, le=1024, description="images are resized to size x size pixels")
    eps: float = Field(0.02, gt=0, description="added to the standard deviation (in 0..1 intensity units)")
