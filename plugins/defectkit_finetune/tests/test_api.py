"""defectkit_finetune.api is the finetune plugin's API for other plugins: what it promises is there."""

from __future__ import annotations

import re

from defectkit_finetune import api

# the extension points the api module's docstring names, which DefectFill's trainer overrides or calls
EXTENSION_POINTS = re.findall(r"``(\w+)``", api.__doc__.split("The extension points", 1)[1].split("Everything", 1)[0])


def test_the_extension_points_are_public_documented_members_of_the_trainer():
    assert {"precision", "place", "optimize", "save", "export", "resume_state", "attach"} <= set(EXTENSION_POINTS)
    for name in EXTENSION_POINTS:
        member = getattr(api.FinetuneTrainer, name)
        assert not name.startswith("_")
        assert member.__doc__, f"FinetuneTrainer.{name} has no docstring"

