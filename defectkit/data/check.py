"""``defectkit data check``: counts, sizes, mask coverage and every problem of a dataset."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from defectkit.errors import DataError


@dataclass
class CheckReport:
    counts: Counter = field(default_factory=Counter)  # (split, category, class) -> images
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    pixel_formats: Counter = field(default_factory=Counter)  # "I;16 16-bit" -> images, as stored in the files
    coverage: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def check_dataset(format_name: str, root: str | None, category: str | None, options: dict[str, Any] | None = None) -> CheckReport:
    """Open the dataset leniently, then decode every image and mask, collecting every problem."""
    from pydantic import ValidationError

    from defectkit.data.pixels import decode_image
    from defectkit.plugins import get_registry
    from defectkit.recipe import validation_message

    component = get_registry().get("dataset", format_name)
    raw = dict(options or {})
    raw.update({k: v for k, v in (("root", root), ("category", category)) if v is not None})
    model = component.load_config_model()
    if model is not None and "on_error" in model.model_fields:
        raw["on_error"] = "warn"
    try:
        config = model.model_validate(raw) if model is not None else None
    except ValidationError as exc:
        raise DataError(validation_message(f"dataset {format_name!r}", exc, model=model)) from None
    dataset = component.load_factory()(config)
    report = CheckReport(problems=list(getattr(dataset, "problems", [])))
    for split in ("train", "val", "test"):
        for sample in dataset.samples(split):
            try:
                if sample.loader is None and sample.image_path is not None:
                    decoded = decode_image(sample.image_path)
                    image, pixel_format = decoded.image, decoded.pixel_format
                else:
                    image, pixel_format = sample.load_image(), "generated in memory"
                mask = sample.load_mask()
            except DataError as exc:
                report.problems.append(("unreadable images or masks", str(exc)))
                continue
            key = (split, sample.object_class or "-", sample.defect_type)
            report.counts[key] += 1
            report.sizes[image.size] += 1
            report.pixel_formats[pixel_format] += 1
            if sample.label == 1:
                if mask is None:
                    report.coverage[(sample.object_class or "-", sample.defect_type)].append(float("nan"))
                elif mask.shape != (image.height, image.width):
                    report.problems.append(("masks of the wrong size", f"{sample.mask_path or sample.id}: mask {mask.shape[::-1]} vs image {image.size}"))
                elif not mask.any():
                    report.problems.append(("empty masks", f"{sample.mask_path or sample.id}: defective image with an all-background mask"))
                else:
                    report.coverage[(sample.object_class or "-", sample.defect_type)].append(float(mask.mean()))
    for (split, cat, cls), n in report.counts.items():
        if n == 0:
            report.problems.append(("empty classes", f"{split}/{cat}/{cls} has no images"))
    if report.total == 0:
        report.problems.append(("empty dataset", f"{root}: no samples found for format {format_name!r}"))
    return report


def print_report(report: CheckReport, title: str) -> None:
    import math

    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = Table(title=f"{title}: {report.total} images", title_justify="left")
    for column in ("split", "category", "class", "images"):
        counts.add_column(column, justify="right" if column == "images" else "left")
    for (split, cat, cls), n in sorted(report.counts.items()):
        counts.add_row(split, cat, cls, str(n))
    console.print(counts)
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.sizes.most_common(5))
    console.print(f"image sizes: {sizes or '-'}" + (" ..." if len(report.sizes) > 5 else ""), markup=False)
    formats = ", ".join(f"{name} ({n})" for name, n in report.pixel_formats.most_common())
    console.print(f"pixel formats (mode, bits per sample): {formats or '-'}", markup=False)
    if report.coverage:
        coverage = Table(title="mask coverage of defective images (share of pixels)", title_justify="left")
        for column in ("category", "class", "masks", "mean", "min", "max"):
            coverage.add_column(column)
        for (cat, cls), values in sorted(report.coverage.items()):
            known = [v for v in values if not math.isnan(v)]
            if known:
                coverage.add_row(cat, cls, str(len(known)), f"{sum(known) / len(known):.2%}", f"{min(known):.2%}", f"{max(known):.2%}")
            else:
                coverage.add_row(cat, cls, "0 (no masks)", "-", "-", "-")
        console.print(coverage)
    if report.problems:
        kinds = Counter(kind for kind, _ in report.problems)
        console.print(f"[red]{len(report.problems)} problem(s)[/]: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()))
        for _, message in report.problems:
            console.print(f"  - {message}", markup=False, highlight=False)
    else:
        console.print("[green]no problems found[/]")
