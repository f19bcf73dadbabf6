"""Data throughput: the synthetic generator, and decoding a folder with DataLoader workers and the cache.

    python -m benchmarks.bench_data [--size 128] [--images 200] [--repeats 3] [--json results.jsonl]

Goal: the generator renders at least 200 images/s at 128 px on one core. The
reference for it is decoding the same images from PNG files, the work a
dataset on disk costs; the reference for the loaders is a single-process loop
over the samples.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # "one core": numpy/scipy stay single-threaded

import numpy as np  # noqa: E402

from benchmarks.harness import Benchmark, parse_args  # noqa: E402
from defectkit.data.cache import ResizedImageCache  # noqa: E402
from defectkit.data.configs import MVTecConfig  # noqa: E402
from defectkit.data.formats import open_mvtec  # noqa: E402
from defectkit.data.procedural import CATEGORIES, render  # noqa: E402
from defectkit.data.synthetic import write_dataset  # noqa: E402


def _collate(batch):
    import torch

    return torch.from_numpy(np.stack(batch))


class _Images:
    """A torch Dataset over samples: decoded, resized, as uint8 arrays (cached when a cache is given)."""

    def __init__(self, samples, size, cache=None):
        self.samples, self.size, self.cache = samples, size, cache

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        if self.cache is not None:
            return self.cache.image(self.samples[i])
        return np.asarray(self.samples[i].load_image().resize((self.size, self.size)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.splitlines()[0], argv, repeats=3, size=128, images=400)
    jobs = [(c, d) for c, spec in CATEGORIES.items() for d in ["good", *spec.defects]]
    work = [jobs[i % len(jobs)] + (i,) for i in range(args.images)]

    generate = Benchmark(f"synthetic generator, {args.size} px, one core", unit="images/s", items=len(work),
                         repeats=args.repeats, warmup=args.warmup)
    generate.measure("defectkit procedural render", lambda: [render(c, d, args.size, s) for c, d, s in work])
    with tempfile.TemporaryDirectory() as tmp:
        root = write_dataset("mvtec", Path(tmp) / "m", size=args.size, n_train=args.images // 5, n_test=args.images // 40)
        files = sorted(Path(root).rglob("*.png"))[: len(work)]
        from PIL import Image

        generate.measure("reference: decode the same from PNG", lambda: [np.asarray(Image.open(f).convert("RGB")) for f in files],
                         reference=True)
        generate.report(args.json_path)

        from torch.utils.data import DataLoader

        samples = open_mvtec(MVTecConfig(root=str(root))).samples("train")
        loader = Benchmark(f"decoded samples from a folder ({len(samples)} PNGs, resize to 64)", unit="samples/s",
                           items=len(samples), repeats=args.repeats, warmup=args.warmup)

        def epoch(workers, cache=None):
            data = _Images(samples, 64, cache)
            # persistent workers: their start-up is paid once (in the warm-up), as in a real multi-epoch run
            loader_ = DataLoader(data, batch_size=16, num_workers=workers, persistent_workers=workers > 0,
                                 collate_fn=_collate)
            return lambda: [batch for batch in loader_]

        loader.measure("reference: one process, no cache", epoch(0), reference=True)
        loader.measure("2 DataLoader workers", epoch(2))
        cache = ResizedImageCache(64)
        loader.measure("resized-image cache (warm epochs)", epoch(0, cache))
        loader.report(args.json_path)


if __name__ == "__main__":
    main()
