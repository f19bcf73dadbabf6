"""The built-in dataset formats and the ``defectkit data`` commands.

Registered through the ``defectkit`` entry point like any plugin. Light: the
readers are import strings until a recipe opens a dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from defectkit.components import Component
from defectkit.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

_FORMATS = {
    "mvtec": ("formats:open_mvtec", "MVTecConfig", "MVTec AD: CAT/train/good, CAT/test/<type>, CAT/ground_truth"),
    "visa": ("formats:open_visa", "VisAConfig", "VisA: the raw release with its split CSV, or the MVTec-like conversion"),
    "neu-det": ("formats:open_neu_det", "NEUDetConfig", "NEU-DET steel: images + Pascal VOC boxes (also as coarse masks)"),
    "folder": ("formats:open_folder", "FolderConfig", "images/, masks/ and train_labels.txt/val_labels.txt (name,label)"),
    "captions": ("formats:open_captions", "CaptionsConfig", "images/ + captions.json, for text-to-image training"),
    "defectfill": ("formats:open_defectfill", "DefectFillConfig", "CAT/train/defective/<type> + defective_masks (DefectFill)"),
    "hf": ("hf:open_hf", "HFConfig", "a Hugging Face datasets dataset, by name or save_to_disk folder"),
    "synthetic": ("synthetic:open_synthetic", "SyntheticConfig", "built-in procedural steel, textures and objects; no files"),
}


@hookimpl
def defectkit_datasets() -> list[Component]:
    return [
        Component(
            kind="dataset",
            name=name,
            factory=f"defectkit.data.{factory}",
            config=f"defectkit.data.configs:{config}",
            summary=summary,
            extra="hf" if name == "hf" else None,
        )
        for name, (factory, config, summary) in _FORMATS.items()
    ]


@hookimpl
def defectkit_register_commands(cli: click.Group) -> None:
    import click

    @cli.group()
    def data() -> None:
        """Make synthetic datasets and check datasets on disk."""

    @data.command()
    @click.option("--kind", type=click.Choice(["mvtec", "neu", "captions"]), required=True, help="which layout and content")
    @click.argument("out", type=click.Path(file_okay=False))
    @click.option("--size", default=128, show_default=True, type=click.IntRange(32, 1024), help="image side in pixels")
    @click.option("--n-train", default=40, show_default=True, type=click.IntRange(1), help="training images per class")
    @click.option("--n-test", default=10, show_default=True, type=click.IntRange(1), help="test images per defect type")
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.option("--category", "categories", multiple=True, help="limit to these categories (mvtec kind)")
    def synth(kind: str, out: str, size: int, n_train: int, n_test: int, seed: int, categories: tuple[str, ...]) -> None:
        """Write synthetic defect images to OUT in a real layout (MVTec AD, NEU-DET or captions)."""
        from defectkit.data.synthetic import write_dataset

        path = write_dataset(kind, out, size=size, n_train=n_train, n_test=n_test, seed=seed, categories=list(categories) or None)
        format_name = {"mvtec": "mvtec", "neu": "neu-det", "captions": "captions"}[kind]
        click.echo(f"wrote {sum(1 for p in path.rglob('*') if p.is_file())} files to {path} (contact sheet: {path / 'contact_sheet.png'})")
        click.echo(f"check it: defectkit data check {path} --format {format_name}")

    @data.command()
    @click.argument("root")
    @click.option("--format", "format_name", required=True, help="a dataset format (see `defectkit plugins`)")
    @click.option("--category", default=None, help="one category, where the format has them")
    def check(root: str, format_name: str, category: str | None) -> None:
        """Count, measure and check a dataset: every problem is listed; exit status 1 if there are any."""
        from defectkit.data.check import check_dataset, print_report

        report = check_dataset(format_name, root, category)
        print_report(report, f"{root} ({format_name})")
        if report.problems:
            raise SystemExit(1)
