"""``defectkit eval-maps`` on a tree made in the test: figures, a scores file, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from defectkit.cli import main
from defectkit_metrics.inputs import mvtec_test_samples
from defectkit_metrics.tests.helpers import write_maps, write_mvtec
from defectkit_metrics.tests.test_detection import reference_aupro, sklearn_figures


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def category(tmp_path: Path) -> Path:
    return write_mvtec(tmp_path / "widget")


def ground_truth(category: Path):
    samples = mvtec_test_samples(category)
    masks = [s.load_mask() for s in samples]
    labels = np.array([s.label for s in samples])
    keys = [f"{s.defect_type}/{s.image_path.stem}.npy" for s in samples]
    return masks, labels, keys


@pytest.mark.usefixtures("defectkit_registry")
def test_eval_maps_matches_sklearn_and_exact_aupro(category, tmp_path, capsys):
    maps = write_maps(category, tmp_path / "maps")
    code, out, err = run_cli(["eval-maps", str(tmp_path / "maps"), "--gt", str(category), "--device", "cpu"], capsys)
    assert code == 0, err
    figures = json.loads(out)
    assert list(figures) == [
        "image_auroc",
        "image_ap",
        "image_f1max",
        "pixel_auroc",
        "pixel_ap",
        "pixel_f1max",
        "pixel_aupro",
    ]
    masks, labels, keys = ground_truth(category)
    stacked = np.stack([maps[k] for k in keys])
    truth = np.stack(masks)
    image = sklearn_figures(stacked.reshape(len(keys), -1).max(axis=1), labels)
    pixel = sklearn_figures(stacked.ravel(), truth.ravel())
    for key in ("auroc", "ap", "f1max"):
        assert figures[f"image_{key}"] == pytest.approx(image[key], abs=1e-6)
        assert figures[f"pixel_{key}"] == pytest.approx(pixel[key], abs=1e-6)
    assert figures["pixel_aupro"] == pytest.approx(reference_aupro(stacked, truth), abs=1e-3)


@pytest.mark.usefixtures("defectkit_registry")
def test_eval_maps_scores_file_and_resized_maps(category, tmp_path, capsys):
    maps = write_maps(category, tmp_path / "maps", size=16)  # half the mask size: resized to the masks
    masks, labels, keys = ground_truth(category)
    rng = np.random.default_rng(4)
    scores = rng.random(len(keys)) + labels * 0.3
    lines = ["path,score"] + [f"/anywhere/test/{k[:-4]}.png,{s}" for k, s in zip(keys, scores, strict=True)]
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(
        ["eval-maps", str(tmp_path / "maps"), "--gt", str(category), "--scores", str(tmp_path / "scores.csv")], capsys
    )
    assert code == 0, err
    figures = json.loads(out)
    assert figures["image_auroc"] == pytest.approx(sklearn_figures(scores, labels)["auroc"], abs=1e-6)
    assert maps[keys[0]].shape == (16, 16)
    assert 0.0 <= figures["pixel_aupro"] <= 1.0


@pytest.mark.usefixtures("defectkit_registry")
def test_eval_maps_errors_name_the_file(category, tmp_path, capsys):
    maps_dir = tmp_path / "maps"
    write_maps(category, maps_dir)

    code, _, err = run_cli(["eval-maps", str(tmp_path / "nope"), "--gt", str(category)], capsys)
    assert code == 2 and "nope: no such folder" in err and "Traceback" not in err

    np.save(maps_dir / "scratch" / "999.npy", np.zeros((32, 32), dtype=np.float32))
    code, _, err = run_cli(["eval-maps", str(maps_dir), "--gt", str(category)], capsys)
    assert code == 2 and "999.npy: no test image matches this map" in err
    (maps_dir / "scratch" / "999.npy").unlink()

    (maps_dir / "dent" / "002.npy").unlink()
    code, _, err = run_cli(["eval-maps", str(maps_dir), "--gt", str(category)], capsys)
    assert code == 2 and "dent/002.npy: missing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.usefixtures("defectkit_registry")
@pytest.mark.parametrize("keep", ["good", "defects"])
def test_eval_maps_one_class_test_set_is_a_clear_error(tmp_path, capsys, keep):
    category = write_mvtec(tmp_path / "widget")
    import shutil

    if keep == "good":
        for name in ("scratch", "dent"):
            shutil.rmtree(category / "test" / name)
    else:
        shutil.rmtree(category / "test" / "good")
    write_maps(category, tmp_path / "maps")
    code, out, err = run_cli(["eval-maps", str(tmp_path / "maps"), "--gt", str(category)], capsys)
    assert code == 2 and out == ""
    assert "image AUROC is undefined" in err and "nan" not in err.lower()
