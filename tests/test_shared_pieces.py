"""The core pieces plugins share instead of copying (issue 19, item 5): what each promises."""

from __future__ import annotations

import math
import subprocess
import sys
import types

import pytest
import torch
from pydantic import ConfigDict, ValidationError

from defectkit.components import lazy_exports
from defectkit.devices import resolve_device
from defectkit.options import StrictOptions
from defectkit.training import warmup_cosine


def test_resolve_device_auto_is_cuda_else_cpu_and_mps_only_when_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device() == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", mps=True) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None, mps=True) == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_strict_options_refuse_unknown_keys_and_merge_a_subclass_config():
    class Options(StrictOptions):
        rank: int = 4

    class Aliased(StrictOptions):
        model_config = ConfigDict(populate_by_name=True)

    with pytest.raises(ValidationError, match="rnak"):
        Options(rnak=8)
    assert Aliased.model_config["extra"] == "forbid" and Aliased.model_config["populate_by_name"]


def test_warmup_cosine_rises_linearly_then_falls_to_zero():
    factor = warmup_cosine(4, 14)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(14) == pytest.approx(0.0) and factor(20) == pytest.approx(0.0)


def test_lazy_exports_import_on_first_use_only():
    code = (
        "import sys, types\n"
        "from defectkit.components import lazy_exports\n"
        "m = types.ModuleType('fake_api'); sys.modules['fake_api'] = m\n"
        "m.__getattr__, m.__dir__ = lazy_exports('fake_api', {'Decimal': 'decimal'})\n"
        "assert 'decimal' not in sys.modules\n"
        "assert m.Decimal.__module__ == 'decimal' and 'Decimal' in vars(m) and 'Decimal' in dir(m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    module = types.ModuleType("other_api")
    sys.modules["other_api"] = module
    try:
        module.__getattr__, module.__dir__ = lazy_exports("other_api", {})
        with pytest.raises(AttributeError, match="other_api.*has no attribute 'missing'"):
            module.missing  # noqa: B018 (the lookup is the test)
    finally:
        del sys.modules["other_api"]
