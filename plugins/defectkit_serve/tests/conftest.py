"""Tiny finished runs shared by the serve tests (module-scoped: each recipe runs once per module)."""

from pathlib import Path

import pytest
import torch

from defectkit.data.synthetic import write_dataset
from defectkit.plugins import get_registry
from defectkit.testing import run_recipe_dict


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's cores are shared; one thread keeps timings predictable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PATCHKNN_RECIPE = {
    "version": 1,
    "name": "serve-patchknn",
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "category": "carpet",
        "with": {"kind": "mvtec", "size": 64, "n_train": 8, "n_test": 2},
    },
    "steps": [
        {"train": {"use": "patch_knn", "with": {"weights": None, "image_size": 64, "layers": ["layer2"]}}},
        {"detect": {"use": "patch_knn", "with": {"blur_sigma": 2.0}}},
        {"detect": {"id": "detect_patchcore", "use": "patch_knn", "with": {"image_score": "patchcore", "overlays": 0}}},
        {"evaluate": {"use": ["detection"]}},
        {"report": {"with": {"title": "serve test"}}},
    ],
}


@pytest.fixture(scope="session")
def carpet_images(tmp_path_factory) -> Path:
    """An on-disk MVTec-layout carpet (64 px), images the runs did not see (another seed)."""
    return write_dataset("mvtec", tmp_path_factory.mktemp("carpet") / "data", size=64, n_train=1, n_test=2, seed=7,
                         categories=["carpet"])  # fmt: skip


@pytest.fixture(scope="session")
def patchknn_run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    if "patchknn" not in get_registry().plugins:
        pytest.skip("the patch_knn plugin is not installed")
    return run_recipe_dict(PATCHKNN_RECIPE, tmp_path_factory.mktemp("runs") / "patchknn")
