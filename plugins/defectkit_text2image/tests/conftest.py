import pytest
import torch

from defectkit_text2image import hooks


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's two cores are shared; one thread keeps timings predictable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def registered(register_plugin, defectkit_registry):
    # a source checkout that was not pip-installed still finds the plugin
    if "text2image" not in defectkit_registry.plugins:
        register_plugin(hooks, "text2image")
