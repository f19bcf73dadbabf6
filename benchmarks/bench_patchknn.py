"""patch_knn: scoring throughput, and detection quality with random (offline) backbone weights.

    python -m benchmarks.bench_patchknn [--repeats 5] [--threads 2] [--json results.jsonl]

Speed: scoring 32 texture crops (128 px, resnet18 layer2+layer3, 10 % coreset
of 48 good crops) in batches of 16, against the same model fed one image at a
time (the reference). Quality: image and pixel AUROC on held-out crops of the
three scikit-image texture photos with pasted defects (60 good, 60 defective),
for three seeds of the random backbone; the figures in docs/patchknn.md.
"""

from __future__ import annotations

import numpy as np
import torch
from defectkit_patchknn.detector import load_images, to_tensor
from defectkit_patchknn.model import FeatureSettings, PatchKNNModel
from defectkit_patchknn.tests.textures import TextureConfig, TextureCrops
from sklearn.metrics import roc_auc_score

from benchmarks.harness import Benchmark, parse_args

SETTINGS = FeatureSettings("resnet18", None, ("layer2", "layer3"), 128, 0)


def fitted(texture: str, seed: int) -> tuple[PatchKNNModel, TextureCrops]:
    data = TextureCrops(TextureConfig(texture=texture, n_train=48, n_test_good=60, n_test_defective=60))
    model = PatchKNNModel(FeatureSettings(**{**SETTINGS.__dict__, "seed": seed}))
    train = data.samples("train")
    model.fit((to_tensor(load_images(train[i : i + 16], 128)) for i in range(0, len(train), 16)), 0.1, 128)
    return model, data


def quality(texture: str, seed: int) -> tuple[float, float]:
    model, data = fitted(texture, seed)
    test = data.samples("test")
    maps = torch.cat([model.score(to_tensor(load_images(test[i : i + 16], 128))).maps for i in range(0, len(test), 16)])
    labels = [s.label for s in test]
    masks = np.stack([s.load_mask() for s in test])
    maps = maps.numpy()
    return roc_auc_score(labels, maps.reshape(len(test), -1).max(axis=1)), roc_auc_score(masks.ravel(), maps.ravel())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, threads=2)
    torch.set_num_threads(args.threads)
    model, data = fitted("brick", 0)
    images = to_tensor(load_images(data.samples("test")[:32], 128))
    bench = Benchmark(
        f"patch_knn scoring, 128 px, bank {model.bank.shape[0]}x{model.bank.shape[1]}, CPU x{args.threads}",
        unit="img/s",
        items=len(images),
        repeats=args.repeats,
        warmup=args.warmup,
    )
    bench.measure("one image at a time", lambda: [model.score(image[None]) for image in images], reference=True)
    bench.measure("batches of 16", lambda: [model.score(images[i : i + 16]) for i in range(0, len(images), 16)])
    bench.report(args.json_path)

    print("\nimage / pixel AUROC, random resnet18 weights (seeds 0, 1, 2), 60 good + 60 defective held-out crops")
    for texture in ("brick", "gravel", "grass"):
        figures = np.array([quality(texture, seed) for seed in range(3)])
        cells = "   ".join(
            f"{name} {f.mean():.3f} ({f.min():.3f}-{f.max():.3f})"
            for name, f in zip(("image", "pixel"), figures.T, strict=True)
        )
        print(f"  {texture:<7} {cells}")


if __name__ == "__main__":
    main()
