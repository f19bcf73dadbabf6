"""Detection on real photographs: defectkit's CPU recipes beside anomalib 2.7's PatchCore and PaDiM.

    python -m benchmarks.bench_real_photos [--category brick ...] [--detector patch_knn ...] [--no-anomalib]
                                           [--size 128] [--json results.jsonl]

Builds the real-photo set (:mod:`benchmarks.real_photos`: tiles of
scikit-image's brick, gravel and grass photos with drawn defects, MVTec
layout) under ``benchmarks/results/real_photos``, runs each defectkit recipe
as a user would (``defectkit run RECIPE --set data.format=mvtec ...``) and
anomalib's PatchCore and PaDiM with random backbones (nothing is downloaded
here) in a virtual environment it makes itself, ``benchmarks/.venv-anomalib``
(``pip install anomalib==2.7.*``, once). anomalib sees the tiles at the same
size as defectkit (``--size``, the tiles' own 128 px), not its default 256, so
both work on the same pixels. Every figure -- image AUROC, pixel AUROC,
pixel AUPRO (FPR up to 0.3) -- is computed from the written maps and scores by
the same code (:mod:`defectkit_metrics.detection`), and each defectkit figure
is printed with its ratio to anomalib PatchCore's. Wall times are whole runs
(train + detect + evaluate, or fit + score), on whatever load the machine has:
the load average is printed with them.

patch_knn's settings were chosen on ``brick`` (TUNED); ``gravel`` and
``grass`` are for reporting only. decodiff_tiny's settings come from the
synthetic data alone so far. On 2 shared cores anomalib's PatchCore and
patch_knn take about a minute a category; decodiff_tiny's 300 training steps
take from 2 minutes (quiet) to 25 (load average 4-5).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.real_photos import CATEGORIES, FULL, build

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
VENV = REPO / "benchmarks" / ".venv-anomalib"
ANOMALIB = "anomalib==2.7.*"
#: categories the recipes' settings were chosen on; the others are for reporting only
TUNED = ("brick",)
RECIPES = {"patch_knn": "patchknn_tiny", "decodiff": "decodiff_tiny"}
REFERENCES = ("patchcore", "padim")


def load_masks(root: Path, category: str, names: list[str], size: int) -> np.ndarray:
    """Ground-truth masks of test images named ``<defect>/<file>`` (all False for good ones)."""
    masks = []
    for name in names:
        defect, file = name.split("/")
        path = root / category / "ground_truth" / defect / f"{Path(file).stem}_mask.png"
        masks.append(np.asarray(Image.open(path)) > 127 if defect != "good" else np.zeros((size, size), bool))
    return np.stack(masks)


def figures(scores: np.ndarray, maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    from defectkit_metrics.detection import aupro, ranking_metrics

    labels = masks.reshape(len(masks), -1).any(axis=1)
    return {
        "image_auroc": ranking_metrics(scores, labels)["auroc"],
        "pixel_auroc": ranking_metrics(maps, masks)["auroc"],
        "pixel_aupro": aupro(maps, masks),
    }


def run_defectkit(detector: str, root: Path, category: str, out: Path) -> tuple[dict[str, float], float]:
    """Run the detector's CPU recipe on one category as a user would; its figures from the maps it wrote."""
    run_dir = out / f"{detector}-{category}"
    command = [
        sys.executable, "-m", "defectkit", "run", RECIPES[detector], "--quiet", "--out", str(run_dir),
        "--set", "data.format=mvtec", "--set", f"data.root={root}", "--set", f"data.category={category}",
        "--set", "device=cpu",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    detect = next(p for p in sorted(run_dir.iterdir()) if p.name.endswith("_detect"))
    with open(detect / "scores.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # one row per test image: "<defect>/<stem>" and its image score; the map is anomaly_maps/<defect>/<stem>.npy
    names = [row["path"] for row in rows]
    scores = np.array([float(row["score"]) for row in rows])
    maps = [np.load(detect / "anomaly_maps" / f"{name}.npy") for name in names]
    maps = np.stack(maps).astype(np.float32)
    return figures(scores, maps, load_masks(root, category, names, maps.shape[-1])), seconds


def ensure_anomalib() -> Path:
    """The anomalib virtual environment's python, made and filled on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"making {VENV} and installing {ANOMALIB} (once; torch comes with it) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", ANOMALIB], check=True)
    return python


def run_anomalib(model: str, root: Path, category: str, size: int, out: Path) -> tuple[dict[str, float], float]:
    python = ensure_anomalib()
    result = out / f"anomalib-{model}-{category}.npz"
    # its progress bars and deprecation warnings are noise here
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run(
        [str(python), str(REPO / "benchmarks" / "anomalib_runner.py"), str(root), category, model, str(size), str(result)],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    data = np.load(result)
    names = [str(n) for n in data["names"]]
    return figures(data["scores"], data["maps"], load_masks(root, category, names, size)), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", action="append", choices=CATEGORIES, help="only these (repeatable)")
    parser.add_argument("--detector", action="append", choices=sorted(RECIPES), help="only these (repeatable)")
    parser.add_argument("--no-anomalib", action="store_true", help="skip anomalib's PatchCore and PaDiM")
    parser.add_argument("--json", dest="json_path", help="append one JSON line per row to this file")
    args = parser.parse_args(argv)
    categories = tuple(args.category or CATEGORIES)
    detectors = args.detector or list(RECIPES)
    root = build(RESULTS / "real_photos", categories, FULL)
    out = RESULTS / f"real_photos_runs-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    rows = []
    for category in categories:
        results = {}
        if not args.no_anomalib:
            for model in REFERENCES:
                results[f"anomalib {model}"] = run_anomalib(model, root, category, FULL.tile, out)
        for detector in detectors:
            results[detector] = run_defectkit(detector, root, category, out)
        reference = results.get("anomalib patchcore")
        load = os.getloadavg()
        for name, (values, seconds) in results.items():
            ratios = (
                {k: values[k] / reference[0][k] for k in values}
                if reference and not name.startswith("anomalib")
                else {}
            )
            rows.append({"category": category, "tuned_on": category in TUNED, "implementation": name, **values,
                         "ratios_to_anomalib_patchcore": ratios, "seconds": seconds, "load_average": load})  # fmt: skip
        print_category(category, rows[-len(results) :])
    if args.json_path:
        with open(args.json_path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)


def print_category(category: str, rows: list[dict]) -> None:
    role = "settings chosen here" if category in TUNED else "reporting only"
    print(
        f"\n{category} ({role}; {FULL.n_train} good training tiles, {FULL.n_good + 5 * FULL.n_per_defect} test tiles)"
    )
    print(
        f"  {'implementation':<20} {'image AUROC':>16} {'pixel AUROC':>16} {'AUPRO':>16} {'wall':>8}  load avg (1 min)"
    )
    for row in rows:
        cells = []
        for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
            ratio = row["ratios_to_anomalib_patchcore"].get(key)
            cells.append(f"{row[key]:.3f}" + (f" ({ratio:.2f}x)" if ratio is not None else "        "))
        print(f"  {row['implementation']:<20} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} {row['seconds']:>7.0f}s  "
              f"{row['load_average'][0]:.2f}")  # fmt: skip
    print("  (ratio) = defectkit figure / anomalib PatchCore's, same tiles, same random-init WideResNet-50 family")


if __name__ == "__main__":
    main()
