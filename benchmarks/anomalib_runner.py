"""Run anomalib's PatchCore or PaDiM on one MVTec-layout category; run inside the anomalib virtual environment.

    benchmarks/.venv-anomalib/bin/python benchmarks/anomalib_runner.py ROOT CATEGORY {patchcore,padim} SIZE OUT.npz [SEED]

:mod:`benchmarks.bench_real_photos` makes that environment and calls this file
as a script (it imports nothing of defectkit, which is not installed there).
It uses anomalib's own torch models with their defaults and the lightning
models' own pre-processors (resize, ImageNet normalisation) at SIZE pixels
(anomalib's default is 256; the benchmark passes the tiles' own size, as
defectkit's recipes use it, so both see the same pixels); the
backbones are random (``pre_trained=False``, timm's initialisation) because
nothing is downloaded here. The Lightning engine is left out: it adds its
loggers and callbacks, not detection quality. Writes the image scores, the
maps resized to the tiles' size, the file names and the fit and score times,
so that the benchmark computes every figure with the same code for everyone;
for PatchCore also its random backbone's weights (``OUT.backbone.pth``, the
stages it uses), which the benchmark gives to patch_knn for a run on the very
same weights.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

BATCH = 16


def load(paths: list[Path]) -> torch.Tensor:
    images = [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0 for p in paths]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)


def main(root: str, category: str, model_name: str, size: str, out: str, seed: str = "0") -> None:
    from anomalib.models import Padim, Patchcore

    torch.manual_seed(int(seed))  # the random backbone and the coreset's start (its sparse projection is unseeded)
    base = Path(root) / category
    train = sorted((base / "train" / "good").glob("*.png"))
    test = sorted((base / "test").glob("*/*.png"))
    kind = Patchcore if model_name == "patchcore" else Padim
    module = kind(pre_trained=False, pre_processor=kind.configure_pre_processor(image_size=(int(size), int(size))))
    transform = module.pre_processor.transform
    model = module.model.train()
    if model_name == "patchcore":
        # the random timm backbone as drawn, so that defectkit's patch_knn can run with the very same weights
        backbone = model.feature_extractor.feature_extractor.state_dict()
        torch.save(backbone, Path(out).with_suffix(".backbone.pth"))
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(train), BATCH):
            model(transform(load(train[i : i + BATCH])))
    if model_name == "patchcore":
        model.subsample_embedding(module.coreset_sampling_ratio)
    else:
        model.fit()
    fit_seconds = time.perf_counter() - start
    model.eval()
    scores, maps = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(test), BATCH):
            images = load(test[i : i + BATCH])
            result = model(transform(images))
            maps.append(F.interpolate(result.anomaly_map, size=images.shape[-2:], mode="bilinear").squeeze(1))
            scores.append(result.pred_score.flatten())
    score_seconds = time.perf_counter() - start
    np.savez(
        out,
        names=np.array([f"{p.parent.name}/{p.name}" for p in test]),
        scores=torch.cat(scores).numpy(),
        maps=torch.cat(maps).numpy(),
        fit_seconds=fit_seconds,
        score_seconds=score_seconds,
    )


if __name__ == "__main__":
    main(*sys.argv[1:7])
