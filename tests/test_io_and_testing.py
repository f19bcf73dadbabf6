"""Atomic writes, and the helpers defectkit.testing gives plugin authors."""

from __future__ import annotations

import pytest
from fakes import FakePlugin
from pydantic import ValidationError

from defectkit import Component
from defectkit import io as dkio
from defectkit.testing import check_component, check_plugin_light


def test_atomic_path_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "metrics.json"
    dkio.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with dkio.atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("interrupted")
    assert dkio.read_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"], "no temporary file left behind"


def test_atomic_dir_replaces_a_checkpoint_folder_whole(tmp_path):
    target = tmp_path / "checkpoint"
    with dkio.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with dkio.atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("2")
            raise KeyboardInterrupt
    assert (target / "a.txt").read_text() == "1"
    with dkio.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_check_component_builds_defaults_and_rejects_bad_options():
    component = FakePlugin().defectkit_trainers()[0]
    assert check_component(component).rank == 4
    with pytest.raises(ValidationError):
        check_component(component, {"rank": 0})
    with pytest.raises(ModuleNotFoundError):
        check_component(Component(kind="trainer", name="x", factory="no_such_module_abc:X"))


def test_check_component_checks_requirements():
    check_component(Component(kind="metric", name="x", factory="builtins:repr", requires=("pydantic>=2", "not-installed-pkg>=1")))
    with pytest.raises(AssertionError, match="requires pydantic<1, but pydantic"):
        check_component(Component(kind="metric", name="x", factory="builtins:repr", requires=("pydantic<1",)))
    with pytest.raises(AssertionError, match="is not a requirement"):
        check_component(Component(kind="metric", name="x", factory="builtins:repr", requires=("pydantic >= = 2",)))


def test_check_plugin_light_catches_a_heavy_hooks_module(tmp_path, monkeypatch):
    (tmp_path / "heavy_hooks_mod.py").write_text("import torch\nfrom defectkit import hookimpl\n")
    (tmp_path / "light_hooks_mod.py").write_text("from defectkit import hookimpl\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    check_plugin_light("light_hooks_mod")
    with pytest.raises(AssertionError, match="pulls in torch"):
        check_plugin_light("heavy_hooks_mod")


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    path = dkio.write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, "not the owner-only mode mkstemp creates"
    with dkio.atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "w").write_text("1")
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o777 & ~umask


def test_anomaly_map_names_prefix_the_category_only_when_there_are_several(tmp_path):
    import numpy as np

    from defectkit.anomaly_maps import map_names, save_map, write_scores
    from defectkit.data import Sample
    from defectkit.errors import DataError

    one = [Sample(id="carpet/test/hole/000.png", split="test", label=1, defect_type="hole", object_class="carpet")]
    assert map_names(one, "t") == ["hole/000"]
    two = one + [Sample(id="wood/test/hole/000.png", split="test", label=1, defect_type="hole", object_class="wood")]
    assert map_names(two, "t") == ["carpet/hole/000", "wood/hole/000"]
    with pytest.raises(DataError, match="t: two test images map to the output name hole/000"):
        map_names(one + one, "t")
    save_map(tmp_path / "maps", "carpet/hole/000", np.ones((2, 2)))
    assert np.load(tmp_path / "maps" / "carpet" / "hole" / "000.npy").dtype == np.float32
    assert write_scores(tmp_path / "s.csv", ["a/1"], [0.5]).read_text() == "path,score\na/1,0.500000\n"
