"""One DefectFill image from a finished run: what ``defectkit defectfill generate`` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defectkit.data.sample import read_image
from defectkit.errors import DefectkitError
from defectkit.io import atomic_path
from defectkit.rundir import RunDirectory
from defectkit_defectfill.config import DefectFillGenerateConfig
from defectkit_defectfill.generate import DefectFillGenerator, DefectFillSession, write_attention_map


def run_generate_options(run: RunDirectory) -> dict:
    """The options of the run's defectfill generate step, if it has one (else the defaults)."""
    import yaml

    resolved = yaml.safe_load((run.path / "recipe.resolved.yaml").read_text(encoding="utf-8")) or {}
    for step in resolved.get("steps", []):
        body = step.get("generate") or {}
        if body.get("use") == ["defectfill"] or body.get("use") == "defectfill":
            return dict(body.get("with") or {})
    return {}


def generate_one(
    run_dir: Path,
    image_path: Path,
    mask_path: Path,
    defect: str,
    out: Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    candidates: int | None = None,
    latent_blending: bool | None = None,
    device: str = "auto",
    save_attention: bool = False,
) -> list[Path]:
    """Fill ``defect`` into the image at ``image_path`` where ``mask_path`` is set; return the PNGs written.

    The first is the image; with ``save_attention`` one ``<out>_attention_<type>.png`` per defect type follows.
    """
    run = RunDirectory(run_dir)
    adapter = run.artifact("adapter", producers=("defectfill",))
    options = run_generate_options(run)
    if save_attention:
        options["save_attention"] = True
    for key, value in (("steps", steps), ("candidates", candidates), ("latent_blending", latent_blending)):
        if value is not None:
            options[key] = value
    options["adapter"] = str(adapter)
    image = read_image(image_path)  # one DataError line for a file that is no image
    mask = read_image(mask_path).convert("L")
    if not (np.asarray(mask) > 127).any():
        raise DefectkitError(f"{mask_path}: the mask is empty; paint the defect's place white")
    generator = DefectFillGenerator(DefectFillGenerateConfig(**options))
    session = DefectFillSession(generator, generator.load(adapter, device))
    if defect not in session.labels:
        raise DefectkitError(f"--defect {defect}: this run's adapter fills {', '.join(session.labels)}")
    result = session.generate(defect, seed=seed, image=image, mask=mask)
    out = out or run.path / "defectfill" / f"{image_path.stem}_{defect.replace('+', '-')}_{seed}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        result.save(tmp, format="PNG")
    written = [out]
    for kind, plane in session.last_attention.items():
        path = out.with_name(f"{out.stem}_attention_{kind}.png")
        write_attention_map(path, plane, result.size)
        written.append(path)
    return written
