import pytest
import torch

from defectkit_diffusion import hooks
from defectkit_diffusion.tiny import build_tiny_controlnet, build_tiny_depth_estimator, build_tiny_pipeline


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's two cores are shared; one thread keeps timings predictable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def registered(register_plugin, defectkit_registry):
    if "diffusion" not in defectkit_registry.plugins:  # a source checkout that was not pip-installed
        register_plugin(hooks, "diffusion")
    return defectkit_registry


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny pipelines, ControlNets and a depth estimator, built once per session: name -> folder."""
    root = tmp_path_factory.mktemp("tiny_diffusion")
    folders = {}
    for family in ("sd15", "sdxl", "sd3"):
        folders[family] = build_tiny_pipeline(family, root / family)
        folders[f"{family}_controlnet"] = build_tiny_controlnet(family, root / f"{family}_cn", folders[family])
    for family in ("sd15", "sdxl"):
        folders[f"{family}_inpainting"] = build_tiny_pipeline(family, root / f"{family}_inp", inpainting=True)
    folders["depth"] = build_tiny_depth_estimator(root / "depth")
    return folders
