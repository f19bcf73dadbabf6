"""A recipe option that names code to import is announced by validate and run (issue 20, item 9)."""

from __future__ import annotations

import pytest
import yaml

from defectkit.cli import main


def _validate(tmp_path, capsys, extractor: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "code",
                "data": {"format": "synthetic"},
                "steps": [
                    # the generation metrics need a step that makes images (validation looks ahead)
                    {"train": {"use": "text2image_scratch"}},
                    {"generate": {"use": "text2image_scratch"}},
                    {"evaluate": {"use": ["fid", "lpips"], "with": {"fid": {"extractor": extractor}}}},
                ],
            }
        )
    )
    with pytest.raises(SystemExit) as ended:
        main(["validate", str(path)])
    assert ended.value.code == 0
    return capsys.readouterr().err


def test_an_import_string_option_is_announced(tmp_path, capsys):
    err = _validate(tmp_path, capsys, "my_company.features:build_extractor")
    assert err == (
        "defectkit: note: steps[2].evaluate.with.fid.extractor: this recipe runs code from module 'my_company.features' "
        "(my_company.features:build_extractor); run only recipes you trust as you trust code\n"
    )


@pytest.mark.parametrize("extractor", ["inception", "timm:resnet18", "torchvision:resnet18"])
def test_named_backbones_are_not_code(tmp_path, capsys, extractor):
    assert _validate(tmp_path, capsys, extractor) == ""
