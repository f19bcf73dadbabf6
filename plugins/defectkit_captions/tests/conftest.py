"""Shared fixtures: the plugin and the tiny dataset registered, tiny models built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from defectkit_captions import hooks
from defectkit_captions.tests import tiny_models
from defectkit_captions.tests.helpers import DefectsPlugin


@pytest.fixture
def registered(register_plugin, defectkit_registry) -> None:
    if "captions" not in defectkit_registry.plugins:  # a source checkout that was not pip-installed
        register_plugin(hooks, "captions")
    register_plugin(DefectsPlugin(), "tiny_defects")


@pytest.fixture(scope="session", autouse=True)
def offline() -> Iterator[None]:
    """No test may reach the Hugging Face Hub: every model comes from a local folder.

    huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported (maybe by
    an earlier test), so its constant is set as well as the variable.
    """
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.save_tiny_blip2(tmp_path_factory.mktemp("blip2"))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.save_tiny_llava(tmp_path_factory.mktemp("llava"))


@pytest.fixture(scope="session")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different tiny CLIPs, for single models and the ensemble."""
    root = tmp_path_factory.mktemp("clip")
    return [tiny_models.save_tiny_clip(root / f"clip{seed}", seed=seed) for seed in (0, 1)]
