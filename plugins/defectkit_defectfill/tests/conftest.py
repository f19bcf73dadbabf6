import pytest
import torch
from defectkit_diffusion import hooks as diffusion_hooks
from defectkit_finetune import hooks as finetune_hooks

from defectkit_defectfill import hooks


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's two cores are shared; one thread keeps timings predictable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def registered(register_plugin, defectkit_registry):
    # a source checkout that was not pip-installed still finds the plugins this one builds on
    for module, name in ((hooks, "defectfill"), (diffusion_hooks, "diffusion"), (finetune_hooks, "finetune")):
        if name not in defectkit_registry.plugins:
            register_plugin(module, name)
    return defectkit_registry
