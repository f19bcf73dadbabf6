"""The ``hf`` format: a Hugging Face ``datasets`` dataset by name, or a folder from ``save_to_disk``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectkit.data.base import ListDataset
from defectkit.data.configs import HFConfig
from defectkit.data.pixels import to_rgb
from defectkit.data.sample import NORMAL, Sample
from defectkit.errors import DataError
from defectkit.pathsafe import check_name


def _load(config: HFConfig) -> Any:
    import datasets

    path = Path(config.root)
    try:
        if path.exists():
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(config.root, config.name)
    except FileNotFoundError as exc:
        raise DataError(f"data.root: {config.root}: not a folder written by save_to_disk, nor a dataset found ({exc})") from None
    except (ConnectionError, OSError, ValueError) as exc:
        raise DataError(f"data.root: cannot load the Hugging Face dataset {config.root!r}: {exc}") from None


def _split(dataset: Any, name: str, root: str) -> Any:
    import datasets

    if isinstance(dataset, datasets.Dataset):
        return dataset  # a single saved split serves as whichever the recipe asks for
    if name not in dataset:
        raise DataError(f"data.with: dataset {root!r} has no split {name!r}; it has {', '.join(dataset)}")
    return dataset[name]


def _to_image(value: Any):
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes"):
        import io

        return Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, (str, dict)):
        return Image.open(value if isinstance(value, str) else value["path"])
    raise DataError(f"hf image column holds {type(value).__name__}, not an image")


def _captions(value: Any, column: str | None, row: int) -> tuple[str | None, tuple[str, ...]]:
    """A caption cell: a string, or a list of them (COCO's five per image): (the first, all of them)."""
    if value is None or isinstance(value, str):
        return value, (value,) if value else ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        kept = tuple(v for v in value if v.strip())
        return (kept[0] if kept else None), kept
    raise DataError(f"data.with.caption_column: row {row} of column {column!r} holds {type(value).__name__}, not text")


def open_hf(config: HFConfig) -> ListDataset:
    dataset = _load(config)
    splits: dict[str, list[Sample]] = {}
    for split, name in (("train", config.train_split), ("test", config.test_split)):
        if name is None:
            continue
        table = _split(dataset, name, config.root)
        columns = list(table.column_names)
        for column in (config.image_column, config.caption_column, config.label_column):
            if column is not None and column not in columns:
                raise DataError(f"data.with: split {name!r} of {config.root!r} has no column {column!r}; columns: {', '.join(columns)}")
        rows = range(min(len(table), config.limit or len(table)))
        label_names = None
        if config.label_column is not None:
            feature = table.features[config.label_column]
            label_names = getattr(feature, "names", None)
            labels = table[config.label_column][: len(rows)]
        captions = table[config.caption_column][: len(rows)] if config.caption_column else [None] * len(rows)
        samples = []
        for i in rows:
            defect = NORMAL
            if config.label_column is not None:
                value = labels[i]
                name_of = label_names[value] if label_names is not None else str(value)
                defect = NORMAL if name_of in ("0", NORMAL, "normal") else ("defect" if name_of == "1" else name_of)
                check_name(defect, f"{config.root}: split {name!r}, row {i}, column {config.label_column!r}", "label")

            def load(i=i, table=table):
                return to_rgb(_to_image(table[i][config.image_column]), where=f"{config.root} row {i}"), None

            caption, alternatives = _captions(captions[i], config.caption_column, i)
            samples.append(Sample(id=f"{split}/{i:06d}", split=split, label=int(defect != NORMAL), defect_type=defect,
                                  caption=caption, captions=alternatives, loader=load))
        splits[split] = samples
    return ListDataset(splits, "hf")
