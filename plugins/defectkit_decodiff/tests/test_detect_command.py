"""``defectkit detect RUN_DIR IMAGE_OR_FOLDER...`` on a decodiff run (through its predictor), and the predictor's
contract (``defectkit.testing.check_predictor``)."""

import csv

import pytest

from defectkit.cli import main
from defectkit.data.synthetic import write_dataset
from defectkit.testing import check_predictor, run_recipe_dict
from defectkit_decodiff.tests.test_recipe import full, recipe


def cli(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0


def test_detect_command_scores_new_images_against_the_run_threshold(registered, tmp_path, capsys):
    root = write_dataset("mvtec", tmp_path / "mvtec", size=48, n_train=6, n_test=2, categories=["wood"])
    overrides = ("data.format=mvtec", f"data.root={root}", "data.category=wood", "data.with={}")
    run_dir = run_recipe_dict(recipe(full()), tmp_path / "run", overrides=overrides)
    predictor = check_predictor(run_dir, "detect")
    assert predictor.threshold_source.startswith(("f1_adaptive", "percentile"))

    out = tmp_path / "verdicts"
    cli(["detect", str(run_dir), str(root / "wood" / "test" / "good"), str(root / "wood" / "test" / "hole" / "000.png"),
         "--out", str(out), "--device", "cpu"])  # fmt: skip
    printed = capsys.readouterr().out
    with open(out / "scores.csv", newline="") as handle:
        assert list(csv.DictReader(handle).fieldnames) == ["path", "score"], "the detect step's columns"
    with open(out / "verdicts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # a folder's images are named by their path below it, a file by its stem; two 000s get their folder's name
    assert [r["path"] for r in rows] == ["good_000", "001", "hole_000"]
    assert [r["file"].rsplit("/", 2)[-2:] for r in rows] == [["good", "000.png"], ["good", "001.png"], ["hole", "000.png"]]
    threshold = float(rows[0]["threshold"])
    assert threshold == pytest.approx(predictor.threshold, abs=1e-6) and rows[0]["category"] == "wood"
    assert all(int(r["anomalous"]) == (float(r["score"]) >= threshold) for r in rows)
    # two files named 000: their folder names keep the outputs apart
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["001.png", "good_000.png", "hole_000.png"]
    assert (out / "anomaly_maps" / "hole_000.npy").is_file()
    flagged = sum(int(r["anomalous"]) for r in rows)
    assert f"{flagged} of 3 images anomalous (threshold {threshold:.4f}, decodiff step 02_detect)" in printed

    cli(["detect", str(run_dir), str(root / "wood" / "test" / "good"), "--out", str(out), "--threshold", "-1"])
    assert "2 of 2 images anomalous (threshold -1.0000" in capsys.readouterr().out
    with open(out / "verdicts.csv", newline="") as handle:
        assert all(r["anomalous"] == "1" for r in csv.DictReader(handle)), "every score is above a threshold of -1"


def test_detect_command_without_a_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(tmp_path / "run"), str(tmp_path / "a.png")])
    assert exit_info.value.code == 2
    assert "not a defectkit run directory" in capsys.readouterr().err
