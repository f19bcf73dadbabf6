import pytest
import torch
from defectkit_diffusion import hooks as diffusion_hooks
from defectkit_diffusion.tiny import build_tiny_pipeline

from defectkit_finetune import hooks


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's two cores are shared; one thread keeps timings predictable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def registered(register_plugin, defectkit_registry):
    # a source checkout that was not pip-installed still finds both plugins
    if "finetune" not in defectkit_registry.plugins:
        register_plugin(hooks, "finetune")
    if "diffusion" not in defectkit_registry.plugins:
        register_plugin(diffusion_hooks, "diffusion")


@pytest.fixture(scope="session")
def tiny_pipelines(tmp_path_factory):
    """Tiny random sd15 / sdxl / sd3 pipelines saved with save_pretrained, built on first use."""
    root = tmp_path_factory.mktemp("pipelines")
    built = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny_pipeline(family, root / family)
        return built[family]

    return get
