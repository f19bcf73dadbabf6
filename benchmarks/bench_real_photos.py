"""Detection on real photographs: defectkit's CPU recipes beside anomalib 2.7's PatchCore and PaDiM.

    python -m benchmarks.bench_real_photos [--category brick ...] [--detector patch_knn ...] [--no-anomalib]
                                           [--seeds N] [--json results.jsonl]

Builds the real-photo set (:mod:`benchmarks.real_photos`: tiles of
scikit-image's brick, gravel and grass photos with drawn defects, MVTec
layout) under ``benchmarks/results/real_photos``, runs each defectkit recipe
as a user would (``defectkit run RECIPE --set data.format=mvtec ...``) and
anomalib's PatchCore and PaDiM with random backbones (nothing is downloaded
here) in a virtual environment it makes itself, ``benchmarks/.venv-anomalib``
(``pip install anomalib==2.7.*``, once). anomalib sees the tiles at the same
size as defectkit (the tiles' own 128 px), not its default 256, so
both work on the same pixels. Every figure -- image AUROC, pixel AUROC,
pixel AUPRO (FPR up to 0.3) -- is computed from the written maps and scores by
the same code (:mod:`defectkit_metrics.detection`), and each defectkit figure
is printed with its ratio to anomalib PatchCore's. patch_knn runs twice: with
its own seeded random backbone, as a user gets it, and ("patch_knn, anomalib
weights") with the very random backbone anomalib's PatchCore drew for the same
seed, so that the implementations are compared on identical weights: two
random draws of the same architecture differ by several hundredths on the
stochastic textures. ``--seeds N`` repeats everything for seeds 0..N-1 and
prints the mean and the range. Wall times are whole runs
(train + detect + evaluate, or fit + score), on whatever load the machine has:
the load average is printed with them.

patch_knn's settings were chosen on ``brick`` (TUNED); ``gravel`` and
``grass`` are for reporting only. decodiff_tiny's settings come from the
synthetic data: what was tried on brick (docs/decodiff.md) moved its figures
by no more than a second seed does. On 2 shared cores anomalib's PatchCore and
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
#: patch_knn run on the very random backbone anomalib's PatchCore drew (same weights, not only the same recipe)
SAME_WEIGHTS = "patch_knn, anomalib weights"


def load_masks(root: Path, category: str, names: list[str], size: int) -> np.ndarray:
    """Ground-truth masks of test images named ``<defect>/<file>`` (all False for good ones)."""
    masks = []
    for name in names:
        defect, file = name.split("/")
        path = root / category / "ground_truth" / defect / f"{Path(file).stem}_mask.png"
        masks.append(np.asarray(Image.open(path)) > 127 if defect != "good" else np.zeros((size, size), bool))
    return np.stack(masks)


def figures(scores: np.ndarray, maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    from defectkit_metrics.api import aupro, ranking_metrics

    labels = masks.reshape(len(masks), -1).any(axis=1)
    return {
        "image_auroc": ranking_metrics(scores, labels)["auroc"],
        "pixel_auroc": ranking_metrics(maps, masks)["auroc"],
        "pixel_aupro": aupro(maps, masks),
    }


def run_defectkit(
    detector: str, root: Path, category: str, out: Path, seed: int = 0, weights: Path | None = None
) -> tuple[dict[str, float], float]:
    """Run the detector's CPU recipe on one category as a user would; its figures from the maps it wrote.

    ``seed``: the train step's seed (patch_knn: the random backbone and the coreset; decodiff: the UNet's
    initial weights and the training masks). ``weights``: a backbone weight file instead (patch_knn)."""
    run_dir = out / (f"{detector}-{category}-seed{seed}" + ("-anomalib-weights" if weights else ""))
    command = [
        sys.executable, "-m", "defectkit", "run", RECIPES[detector], "--quiet", "--out", str(run_dir),
        "--set", "data.format=mvtec", "--set", f"data.root={root}", "--set", f"data.category={category}",
        "--set", "device=cpu", "--set", f"steps.0.train.with.seed={seed}",
    ]  # fmt: skip
    if weights is not None:
        command += ["--set", f"steps.0.train.with.weights={weights}"]
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


def anomalib_weights(result: Path, backbone: str = "wide_resnet50_2") -> Path:
    """anomalib PatchCore's random timm backbone (saved by the runner beside ``result``) as a torchvision file.

    timm and torchvision name a ResNet's weights alike; timm's feature extractor keeps only the stages it
    uses, so the later ones (layer4, fc) are filled with torchvision's initial weights, which patch_knn's
    layer2 + layer3 never read.
    """
    import torch
    import torchvision

    state = torch.load(result.with_suffix(".backbone.pth"), weights_only=True)
    for key, value in torchvision.models.get_model(backbone, weights=None).state_dict().items():
        state.setdefault(key, value)
    path = result.with_suffix(".torchvision.pth")
    torch.save(state, path)
    return path


def ensure_anomalib() -> Path:
    """The anomalib virtual environment's python, made and filled on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"making {VENV} and installing {ANOMALIB} (once; torch comes with it) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", ANOMALIB], check=True)
    return python


def run_anomalib(
    model: str, root: Path, category: str, size: int, out: Path, seed: int = 0
) -> tuple[dict[str, float], float]:
    """``seed``: torch's seed before anomalib builds its model (the random timm backbone, the coreset)."""
    python = ensure_anomalib()
    result = out / f"anomalib-{model}-{category}-seed{seed}.npz"
    # its progress bars and deprecation warnings are noise here
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    subprocess.run(
        [str(python), str(REPO / "benchmarks" / "anomalib_runner.py"), str(root), category, model, str(size), str(result), str(seed)],
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
    parser.add_argument(
        "--seeds", type=int, default=1, metavar="N",
        help="run every implementation with seeds 0..N-1 (random backbones, coresets, initial weights) and print "
        "the mean and the range: with 65 test tiles, one seed's image AUROC moves by a few hundredths",
    )  # fmt: skip
    parser.add_argument("--json", dest="json_path", help="append one JSON line per row to this file")
    args = parser.parse_args(argv)
    categories = tuple(args.category or CATEGORIES)
    detectors = args.detector or list(RECIPES)
    root = build(RESULTS / "real_photos", categories, FULL)
    out = RESULTS / f"real_photos_runs-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    rows = []
    for category in categories:
        results: dict[str, list[tuple[dict[str, float], float]]] = {}
        for seed in range(args.seeds):
            if not args.no_anomalib:
                for model in REFERENCES:
                    results.setdefault(f"anomalib {model}", []).append(
                        run_anomalib(model, root, category, FULL.tile, out, seed)
                    )
            for detector in detectors:
                results.setdefault(detector, []).append(run_defectkit(detector, root, category, out, seed))
            if not args.no_anomalib and "patch_knn" in detectors:
                # identical conditions: the random backbone anomalib's PatchCore drew for this seed
                result = out / f"anomalib-patchcore-{category}-seed{seed}.npz"
                weights = anomalib_weights(result)
                results.setdefault(SAME_WEIGHTS, []).append(
                    run_defectkit("patch_knn", root, category, out, seed, weights)
                )
                for path in (weights, result.with_suffix(".backbone.pth")):
                    path.unlink()  # 0.3 GB each; the bank patch_knn built from them stays in its run
        means = {
            name: {k: float(np.mean([v[k] for v, _ in runs])) for k in runs[0][0]} for name, runs in results.items()
        }
        reference = means.get("anomalib patchcore")
        load = os.getloadavg()
        for name, runs in results.items():
            values = means[name]
            ratios = (
                {k: values[k] / reference[k] for k in values} if reference and not name.startswith("anomalib") else {}
            )
            spread = {k: [min(v[k] for v, _ in runs), max(v[k] for v, _ in runs)] for k in values}
            rows.append({"category": category, "tuned_on": category in TUNED, "implementation": name, **values,
                         "seeds": len(runs), "per_seed": [v for v, _ in runs], "range": spread,
                         "ratios_to_anomalib_patchcore": ratios, "seconds": float(np.mean([t for _, t in runs])),
                         "load_average": load})  # fmt: skip
        print_category(category, rows[-len(results) :])
    if args.json_path:
        with open(args.json_path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)


def print_category(category: str, rows: list[dict]) -> None:
    role = "settings chosen here" if category in TUNED else "reporting only"
    print(
        f"\n{category} ({role}; {FULL.n_train} good training tiles, {FULL.n_good + 5 * FULL.n_per_defect} test tiles)"
    )
    seeds = rows[0]["seeds"]
    width = 30 if seeds > 1 else 16
    print(
        f"  {'implementation':<26} {'image AUROC':>{width}} {'pixel AUROC':>{width}} {'AUPRO':>{width}} {'wall':>8}  "
        "load avg (1 min)"
    )
    for row in rows:
        cells = []
        for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
            ratio = row["ratios_to_anomalib_patchcore"].get(key)
            low, high = row["range"][key]
            cell = f"{row[key]:.3f}" + (f" ({low:.3f}-{high:.3f})" if seeds > 1 else "")
            cells.append(cell + (f" ({ratio:.2f}x)" if ratio is not None else "        "))
        print(f"  {row['implementation']:<26} {cells[0]:>{width}} {cells[1]:>{width}} {cells[2]:>{width}} "
              f"{row['seconds']:>7.0f}s  {row['load_average'][0]:.2f}")  # fmt: skip
    if seeds > 1:
        print(f"  mean (min-max) over seeds 0..{seeds - 1}; wall: mean of one run")
    print("  (ratio) = defectkit figure / anomalib PatchCore's, same tiles, same random-init WideResNet-50 family")


if __name__ == "__main__":
    main()
