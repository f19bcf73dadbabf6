"""Bad data found before the first step, not after training.

Opening a dataset checks its layout and every image's header. A file
truncated further in is found only when decoded, which may be the test split
after an hour of training. So at the start of a run every dataset the recipe
names is opened, and when it is small (at most :data:`FULL_DECODE_LIMIT`
image files, a few seconds) every image and mask of every split is decoded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from defectkit.data.pixels import decode_image
from defectkit.data.sample import read_mask
from defectkit.errors import DataError

if TYPE_CHECKING:
    from defectkit.data.sample import DefectDataset, Sample

#: datasets with at most this many image files on disk are decoded in full at the start of a run
FULL_DECODE_LIMIT = 2000
SPLITS = ("train", "val", "test")


def check_before_run(datasets: dict[str, DefectDataset]) -> list[str]:
    """Decode every file of each small dataset (``{where: dataset}``); a broken one is a DataError naming it.

    Returns one line per dataset saying what was checked, for the log.
    """
    lines = []
    for where, dataset in datasets.items():
        samples = [s for split in SPLITS for s in dataset.samples(split) if s.loader is None and s.image_path]
        if len(samples) > FULL_DECODE_LIMIT:
            lines.append(
                f"{where}: {len(samples)} images checked from their headers only "
                f"(more than {FULL_DECODE_LIMIT}; `defectkit data check` decodes them all)"
            )
            continue
        started = time.perf_counter()
        for sample in samples:
            _decode(sample, where)
        lines.append(f"{where}: {len(samples)} images decoded in {time.perf_counter() - started:.1f} s, no problems")
    return lines


def _decode(sample: Sample, where: str) -> None:
    try:
        decode_image(sample.image_path)
        if sample.mask_path is not None:
            read_mask(sample.mask_path)
    except DataError as exc:
        raise DataError(f"{exc} (found by the check of {where} before the first step; nothing was trained)") from None
