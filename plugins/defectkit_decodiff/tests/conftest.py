import pytest
import torch

from defectkit_decodiff import hooks


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine's two cores are shared; one thread keeps timings predictable
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def registered(register_plugin, defectkit_registry):
    if "decodiff" not in defectkit_registry.plugins:  # a source checkout that was not pip-installed
        register_plugin(hooks, "decodiff")
