"""``defectkit defectfill generate RUN_DIR --image GOOD --mask MASK --defect TYPE``: one image, as the seed's inference.py.

Light: click only until the command runs.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("defectfill")
def defectfill_group() -> None:
    """DefectFill on single images, with a finished run's adapter."""


@defectfill_group.command("generate")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--image", "image_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the good image to paint a defect into")
@click.option("--mask", "mask_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="where the defect goes: white (or non-zero) pixels, the image's size or any size (resized)")
@click.option("--defect", required=True, help="the defect type (one the adapter learnt), or types joined by +")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="the PNG to write (default RUN_DIR/defectfill/<image>_<defect>_<seed>.png)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=int, help="denoising steps (default: the run's generate step, else 50)")
@click.option("--candidates", type=int, help="K candidates, the low-fidelity one kept (default: the run's)")
@click.option("--latent-blending/--no-latent-blending", default=None, help="mask-guided latent blending during sampling")
@click.option("--save-attention", is_flag=True,
              help="also write each defect type's [V*] cross-attention map as <out>_attention_<type>.png")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 ... or auto")
def generate_command(
    run_dir: Path,
    image_path: Path,
    mask_path: Path,
    defect: str,
    out: Path | None,
    seed: int,
    steps: int | None,
    candidates: int | None,
    latent_blending: bool | None,
    save_attention: bool,
    device: str,
) -> None:
    """Paint a DefectFill defect into one good image; pixels outside the mask stay exactly as they were."""
    from defectkit_defectfill.single import generate_one

    written = generate_one(
        run_dir, image_path, mask_path, defect, out, seed, steps, candidates, latent_blending, device, save_attention
    )
    for path in written:
        click.echo(f"wrote {path}")
