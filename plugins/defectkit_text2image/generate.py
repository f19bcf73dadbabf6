"""The ``text2image_scratch`` generator: N images per class from a trained model, in the generated-images layout."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from defectkit.errors import DefectkitError
from defectkit.generated import GeneratedWriter
from defectkit_text2image.config import Text2ImageGenerateConfig
from defectkit_text2image.model import load_model
from defectkit_text2image.sampling import cpu_threads, generate
from defectkit_text2image.trainer import prompt_for


class Text2ImageGenerator:
    name = "text2image_scratch"

    def __init__(self, config: Text2ImageGenerateConfig) -> None:
        self.config = config

    def generate(self, ctx) -> None:
        with cpu_threads(self.config.cpu_threads, ctx.device):
            self._generate(ctx)

    def _generate(self, ctx) -> None:
        config = self.config
        folder = Path(config.model) if config.model else ctx.artifact("text2image_model")
        if not folder.is_dir():
            raise DefectkitError(f"step {ctx.step_id}: model {folder} is not a folder")
        model = load_model(folder, config.weights, device=ctx.device)
        learnt = model.info["classes"]
        classes = config.classes or learnt
        unknown = [c for c in classes if c not in learnt]
        if unknown:
            raise DefectkitError(
                f"step {ctx.step_id}: classes {unknown} were not trained; the model knows {', '.join(learnt)}"
            )
        template = config.prompt_template or model.info["prompt_template"]
        object_class = model.info["object_class"]
        jobs = [(c, i) for c in classes for i in range(config.per_class)]
        prompts = [prompt_for(template, c, object_class) for c, _ in jobs]
        # one seed per image: (seed, class, index) names the image, whatever else is generated with it
        seeds = [config.seed * 1_000_003 + learnt.index(c) * 10_007 + i for c, i in jobs]
        started = time.perf_counter()
        images = generate(
            model,
            prompts,
            seeds,
            sampler=config.sampler,
            steps=config.steps,
            guidance=config.guidance,
            eta=config.eta,
            batch_size=config.batch_size,
            device=ctx.device,
        )
        seconds = time.perf_counter() - started
        if not ctx.is_main_process:
            return
        common = {
            "generator": self.name,
            "model": str(folder),
            "weights": config.weights if model.info.get("ema") else "raw (trained without EMA)",
            "sampler": config.sampler,
            "steps": config.steps,
            "guidance": config.guidance,
        }
        writer = GeneratedWriter(ctx.step_dir / "generated", object_class=object_class)
        for (defect, _), prompt, seed, pixels in zip(jobs, prompts, seeds, images, strict=True):
            image = Image.fromarray(pixels)
            if config.output_size:
                image = image.resize((config.output_size, config.output_size), Image.BICUBIC)
            writer.add(image, defect, {**common, "prompt": prompt, "seed": seed})
        root = writer.close(contact_sheet=config.contact_sheet)
        ctx.add_artifact("generated_images", root)
        if config.contact_sheet:
            ctx.add_figure(root / "contact_sheet.png", f"{len(jobs)} generated images, one row per class")
        ctx.log_metrics(
            {
                "generator": self.name,
                "images": len(jobs),
                "classes": len(classes),
                "seconds": round(seconds, 1),
            }
        )
