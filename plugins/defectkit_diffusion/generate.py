"""The ``stable_diffusion`` generator: N images per defect class through a diffusers pipeline.

One pipeline call per batch of images of the same class (guidance is one number a
call); every image has its own ``torch.Generator`` (on the CPU, so a seed gives the
same image on any device) and its seed in the metadata. Under Accelerate the jobs
are shared out with ``accelerator.split_between_processes``; each process writes
its images into ``.shards/`` and the main process, after all are done, writes them
in job order through :class:`defectkit.generated.GeneratedWriter`. A resumed step
skips the images whose shard exists.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from defectkit.errors import DataError, DefectkitError
from defectkit.generated import GeneratedWriter, read_metadata
from defectkit.io import atomic_path
from defectkit_diffusion.adapter import Adapter, apply_adapter, read_adapter
from defectkit_diffusion.cfg_rescale import cfg_rescale_hook
from defectkit_diffusion.config import GenerateConfig

log = logging.getLogger(__name__)

SHARDS = ".shards"


@dataclass
class Job:
    """One image to generate."""

    index: int
    defect_type: str
    prompt: str
    negative_prompt: str
    seed: int
    guidance: float
    source: Any = None  # the real Sample the control images (or inpainting input) come from

    def meta(self) -> dict[str, Any]:
        meta = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "guidance": self.guidance,
        }
        if self.source is not None:
            meta["source"] = self.source.id
        return meta


def _tidy(text: str) -> str:
    """Collapse the spaces an empty placeholder leaves (``"a photo of  scratches"``)."""
    return " ".join(text.replace(" ,", ",").split()).strip(" ,")


@dataclass
class LoadedPipeline:
    """A pipeline with everything the generate step applied to it."""

    pipe: Any
    backend: Any
    scheduler: Any
    modalities: list[Any]
    tokens: dict[str, str] = field(default_factory=dict)
    adapter: Adapter | None = None


class StableDiffusionGenerator:
    """The ``generate`` step (and the web UI's session) for Stable Diffusion backends."""

    def __init__(self, config: GenerateConfig | None = None) -> None:
        self.config = config or GenerateConfig()

    # -- building -----------------------------------------------------------------------------------------

    def _hints(self, step_index: int | None) -> tuple[str, str]:
        base = f"steps[{step_index}].generate.with" if step_index is not None else "steps[N].generate.with"
        return f"{base}.backend.with.model", f"{base}.controlnets"

    def load(self, device: Any, adapter: Adapter | None = None, step_index: int | None = None) -> LoadedPipeline:
        """Build backend, ControlNets, scheduler and adapter into one pipeline on ``device``."""
        from defectkit.plugins import get_registry

        registry = get_registry()
        config = self.config
        backend = registry.get("model_backend", config.backend.use).create(config.backend.with_)
        if not hasattr(backend, "load_pipeline") or not hasattr(backend, "family"):
            raise DefectkitError(
                f"generate: backend {config.backend.use!r} is not a diffusion backend (use sd15, sdxl, sd3 or an inpainting one)"
            )
        backend_hint, controlnet_hint = self._hints(step_index)
        backend.set_hint = backend_hint
        modalities = []
        for number, ref in enumerate(config.controlnets):
            modality = registry.get("controlnet_modality", ref.use).create(ref.with_)
            modality.set_hint = f"{controlnet_hint}[{number}].with.controlnet"
            modalities.append(modality)
        target = backend.device(device)
        nets = None
        if modalities:
            dtype = backend.dtype(device)
            family = getattr(backend, "controlnet_family", backend.family)
            nets = [m.load_controlnet(family, dtype) for m in modalities]
            for modality in modalities:
                if hasattr(modality, "to"):
                    modality.to(target if backend.config.cpu_offload == "none" else "cpu")
        pipe = backend.load_pipeline(device=device, controlnets=nets, compile=False)
        scheduler = None
        if config.scheduler is not None:
            scheduler = registry.get("scheduler", config.scheduler.use).create(config.scheduler.with_)
            scheduler.apply(pipe, backend.family)
        tokens: dict[str, str] = {}
        if adapter is not None:
            tokens = apply_adapter(pipe, adapter, backend.family, config.lora_scale)
        if backend.config.compile:
            backend.compile(pipe)
        return LoadedPipeline(pipe, backend, scheduler, modalities, tokens, adapter)

    def size(self, loaded: LoadedPipeline) -> tuple[int, int]:
        """(width, height) of the images: the options, else the backend's resolution."""
        resolution = getattr(loaded.backend, "resolution", 512)
        return self.config.width or resolution, self.config.height or resolution

    # -- prompts ------------------------------------------------------------------------------------------

    def prompt(self, defect_type: str, object_class: str, tokens: dict[str, str], caption: str | None = None) -> str:
        """The prompt of one image: its caption (with the class token in front) or the class's template."""
        token = tokens.get(defect_type, "")
        if caption:
            return _tidy(caption if not token or token in caption else f"{token} {caption}")
        template = self.config.templates_per_class.get(defect_type, self.config.template)
        return _tidy(template.format(token=token, defect_type=defect_type.replace("_", " "), object_class=object_class))

    def guidance(self, defect_type: str) -> float:
        return self.config.guidance_per_class.get(defect_type, self.config.guidance)

    # -- one pipeline call --------------------------------------------------------------------------------

    def run_batch(self, loaded: LoadedPipeline, jobs: Sequence[Job], size: tuple[int, int], controls=None):
        """Generate the images of ``jobs`` (one class, one guidance) in one call; return PIL images.

        ``controls``: per ControlNet, a list of control images (one per job).
        """
        import torch

        config = self.config
        pipe, family = loaded.pipe, loaded.backend.family
        kwargs: dict[str, Any] = {
            "prompt": [j.prompt for j in jobs],
            "negative_prompt": [j.negative_prompt for j in jobs] if jobs[0].negative_prompt else None,
            "num_inference_steps": config.steps,
            "guidance_scale": jobs[0].guidance,
            "width": size[0],
            "height": size[1],
            "generator": [torch.Generator("cpu").manual_seed(j.seed) for j in jobs],
        }
        native_rescale = "guidance_rescale" in inspect.signature(pipe.__call__).parameters
        if config.guidance_rescale > 0 and native_rescale:
            kwargs["guidance_rescale"] = config.guidance_rescale
        if loaded.modalities:
            refs = config.controlnets
            single = len(refs) == 1
            # one (batch, 3, H, W) tensor in [0, 1] per ControlNet: unambiguous, where nested lists of PIL
            # images are read batch-major by some diffusers pipelines and ControlNet-major by others
            tensors = [_to_tensor(images) for images in controls]
            images = tensors[0] if single else tensors
            scales = refs[0].scale if single else [r.scale for r in refs]
            kwargs["controlnet_conditioning_scale"] = scales
            if family == "sd3":
                kwargs["control_image"] = images
            else:
                kwargs["image"] = images
                kwargs["control_guidance_start"] = refs[0].start if single else [r.start for r in refs]
                kwargs["control_guidance_end"] = refs[0].end if single else [r.end for r in refs]
        if loaded.backend.inpainting:
            if loaded.modalities:
                # ControlNet inpainting: image/mask_image are the inpainting inputs, control_image the controls
                kwargs["control_image"] = kwargs.pop("image")
            sources = [self._inpaint_inputs(j, size) for j in jobs]
            kwargs["image"] = [s[0] for s in sources]
            kwargs["mask_image"] = [s[1] for s in sources]
            kwargs["strength"] = config.strength
        rescale = 0.0 if native_rescale else config.guidance_rescale
        denoiser = getattr(pipe, loaded.backend.denoiser_name())
        with torch.inference_mode(), cfg_rescale_hook(denoiser, jobs[0].guidance, rescale):
            return pipe(**kwargs).images

    @staticmethod
    def _inpaint_inputs(job: Job, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
        import numpy as np

        sample = job.source
        mask = sample.load_mask() if sample is not None else None
        if mask is None or not np.any(mask):
            raise DataError(
                f"generate: an inpainting backend repaints a real image's defect mask; {getattr(sample, 'id', '?')} has none"
            )
        image = sample.load_image().convert("RGB").resize(size, Image.Resampling.BICUBIC)
        mask_image = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).resize(
            size, Image.Resampling.NEAREST
        )
        return image, mask_image

    def control_images(self, loaded: LoadedPipeline, sample: Any, size: tuple[int, int], cache: dict) -> list:
        """The control image of ``sample`` for each ControlNet (cached by sample id)."""
        key = getattr(sample, "id", None)
        if key not in cache:
            image = sample.load_image().convert("RGB")
            cache[key] = [m.control_image(image, size) for m in loaded.modalities]
        return cache[key]

    # -- the step -----------------------------------------------------------------------------------------

    def _adapter(self, ctx) -> Adapter | None:
        choice = self.config.adapter
        if choice == "off":
            return None
        if choice == "auto":
            found = ctx.artifact("adapter", required=False)
            return read_adapter(found) if found is not None else None
        return read_adapter(Path(choice).expanduser())

    def _captions(self, ctx) -> dict[str, tuple[str, str]]:
        """Sample id -> (defect type, caption) from the ``captions`` artifact (empty with template prompts)."""
        if self.config.prompts == "template":
            return {}
        found = ctx.artifact("captions", required=self.config.prompts == "captions")
        if found is None:
            return {}
        path = Path(found)
        if path.is_dir():
            path = path / "captions.jsonl"
        captions = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if record.get("id") and record.get("caption"):
                captions[record["id"]] = (str(record.get("defect_type", "")), record["caption"])
        return captions

    def plan(
        self,
        samples: Sequence[Any],
        tokens: dict[str, str],
        captions: dict[str, tuple[str, str]],
        seed: int,
        object_class: str,
    ) -> list[Job]:
        """Every image to generate, class by class: prompt, seed, guidance and source image."""
        config = self.config
        by_class: dict[str, list[Any]] = {}
        for sample in samples:
            if sample.label == 1 and sample.defect_type:
                by_class.setdefault(sample.defect_type, []).append(sample)
        classes = list(config.defect_types) or sorted(by_class)
        if not classes:
            raise DataError(f"generate: source_split {config.source_split!r} has no defect images to name the classes")
        unknown = sorted((set(config.guidance_per_class) | set(config.templates_per_class)) - set(classes))
        if unknown:
            raise DefectkitError(
                f"generate: guidance_per_class/templates_per_class name {', '.join(unknown)}, "
                f"which is not a class being generated ({', '.join(classes)})"
            )
        needs_source = bool(config.controlnets) or self._inpainting()
        jobs: list[Job] = []
        for defect_type in classes:
            pool = sorted(by_class.get(defect_type, []), key=lambda s: s.id)
            if needs_source and not pool:
                raise DataError(
                    f"generate: no real {defect_type!r} image in split {config.source_split!r} to derive control images from"
                )
            # the source image's own caption, else the captions of the class's other images in turn
            class_captions = [caption for kind, caption in captions.values() if kind == defect_type]
            for number in range(config.images_per_class):
                source = pool[number % len(pool)] if pool else None
                caption = captions[source.id][1] if source is not None and source.id in captions else None
                if caption is None and class_captions:
                    caption = class_captions[number % len(class_captions)]
                index = len(jobs)
                jobs.append(
                    Job(
                        index=index,
                        defect_type=defect_type,
                        prompt=self.prompt(
                            defect_type, object_class or (source.object_class if source else ""), tokens, caption
                        ),
                        negative_prompt=config.negative_prompt,
                        seed=seed + index,
                        guidance=self.guidance(defect_type),
                        # recorded only where the real image shaped the result: LPIPS/SSIM pair with it
                        source=source if needs_source or (source is not None and source.id in captions) else None,
                    )
                )
        return jobs

    def _inpainting(self) -> bool:
        return self.config.backend.use.endswith("inpainting")

    def generate(self, ctx) -> None:
        config = self.config
        adapter = self._adapter(ctx)
        samples = ctx.samples(config.source_split)
        object_class = config.object_class or next((s.object_class for s in samples if s.object_class), "")
        tokens_preview = adapter.tokens if adapter is not None else {}
        seed = ctx.seed if config.seed is None else config.seed
        jobs = self.plan(samples, tokens_preview, self._captions(ctx), seed, object_class)
        shards = ctx.step_dir / SHARDS
        shards.mkdir(parents=True, exist_ok=True)
        loaded = self.load(ctx.device, adapter, step_index=ctx.index)
        size = self.size(loaded)
        accelerator = ctx.accelerator if _distributed() else None
        if accelerator is not None:
            with accelerator.split_between_processes(jobs) as mine:
                self._generate_jobs(ctx, loaded, list(mine), size, shards)
            accelerator.wait_for_everyone()
        else:
            self._generate_jobs(ctx, loaded, jobs, size, shards)
        if ctx.is_main_process:
            self._write(ctx, loaded, jobs, size, shards, object_class)

    def _generate_jobs(self, ctx, loaded: LoadedPipeline, jobs: list[Job], size, shards: Path) -> None:
        todo = [j for j in jobs if not (shards / f"{j.index:06d}.png").is_file()]  # resume: skip finished images
        batches: list[list[Job]] = []
        for job in todo:
            last = batches[-1] if batches else None
            if last and len(last) < self.config.batch_size and last[0].defect_type == job.defect_type:
                last.append(job)
            else:
                batches.append([job])
        cache: dict = {}
        for batch in ctx.progress(
            batches, total=len(todo), description=f"{ctx.step_id}: generate", unit="images", size=len
        ):
            controls = None
            if loaded.modalities:
                per_job = [self.control_images(loaded, j.source, size, cache) for j in batch]
                controls = [[images[m] for images in per_job] for m in range(len(loaded.modalities))]
            for job, image in zip(batch, self.run_batch(loaded, batch, size, controls), strict=True):
                with atomic_path(shards / f"{job.index:06d}.png") as tmp:
                    image.save(tmp, format="PNG")

    def _write(self, ctx, loaded: LoadedPipeline, jobs: list[Job], size, shards: Path, object_class: str) -> None:
        common = {
            "generator": "stable_diffusion",
            "backend": loaded.backend.name,
            "model": loaded.backend.model,
            "scheduler": loaded.scheduler.describe() if loaded.scheduler else type(loaded.pipe.scheduler).__name__,
            "steps": self.config.steps,
            "guidance_rescale": self.config.guidance_rescale,
            "width": size[0],
            "height": size[1],
        }
        if loaded.adapter is not None:
            common["adapter"] = str(loaded.adapter.folder)
        controls = [
            {**m.describe(), "scale": ref.scale, "start": ref.start, "end": ref.end}
            for m, ref in zip(loaded.modalities, self.config.controlnets, strict=True)
        ]
        writer = GeneratedWriter(ctx.step_dir / "generated", object_class=object_class)
        for job in jobs:
            with Image.open(shards / f"{job.index:06d}.png") as image:
                image.load()
                mask = None
                if loaded.backend.inpainting and job.source is not None:
                    mask = self._inpaint_inputs(job, size)[1]
                writer.add(image, job.defect_type, {**common, **job.meta(), "controls": controls}, mask=mask)
        root = writer.close(contact_sheet=self.config.contact_sheet)
        shutil.rmtree(shards, ignore_errors=True)
        ctx.add_artifact("generated_images", root)
        if self.config.contact_sheet:
            ctx.add_figure(root / "contact_sheet.png", f"{len(jobs)} generated images, one row per class")
        processes = ctx.accelerator.num_processes if _distributed() else 1
        ctx.log_metrics(
            {"generated_images": len(jobs), "classes": len({j.defect_type for j in jobs}), "processes": processes}
        )

    # -- the web UI's session -----------------------------------------------------------------------------

    def open_session(self, run_dir: str | Path, step_id: str, device: Any = "auto") -> GenerationSession:
        """Load the pipeline (with the run's adapter) once, for interactive generation (see docs/generation.md)."""
        from defectkit.rundir import RunDirectory

        run = RunDirectory(run_dir)
        step = run.find_step(step_id)
        step_dir = run.path / step.dirname
        adapter = None
        if self.config.adapter == "auto":
            found = run.artifact_before(step, "adapter")  # as the step read it: its inputs:, else the latest
            adapter = read_adapter(found) if found is not None else None
        elif self.config.adapter != "off":
            adapter = read_adapter(Path(self.config.adapter).expanduser())
        loaded = self.load(device, adapter)
        labels, object_class = list(self.config.defect_types), self.config.object_class
        generated = step_dir / "generated"
        if (generated / "metadata.jsonl").is_file():
            records = read_metadata(generated)
            labels = labels or list(dict.fromkeys(r["defect_type"] for r in records))
            object_class = object_class or next((r.get("object_class", "") for r in records), "")
        labels = labels or sorted(loaded.tokens)
        return GenerationSession(self, loaded, labels, object_class)


class GenerationSession:
    """One loaded pipeline for interactive use: ``generate(label, ...) -> PIL.Image``."""

    def __init__(
        self, generator: StableDiffusionGenerator, loaded: LoadedPipeline, labels: list[str], object_class: str
    ):
        self.generator = generator
        self.loaded = loaded
        self.labels = labels
        self.object_class = object_class

    @property
    def capabilities(self):
        """What ``defectkit serve`` shows: the image and painted mask for an inpainting backend, the condition
        image when the step uses ControlNets (both required then), and the negative prompt."""
        from defectkit.protocols import SessionCapabilities

        inpainting, control = bool(self.loaded.backend.inpainting), bool(self.loaded.modalities)
        return SessionCapabilities(
            inpainting=inpainting, requires_image=inpainting, control_image=control, requires_control_image=control
        )

    def generate(
        self,
        label: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        seed: int = 0,
        guidance: float | None = None,
        steps: int | None = None,
        control_image: Image.Image | None = None,
        image: Image.Image | None = None,
        mask: Image.Image | None = None,
    ) -> Image.Image:
        """One image of class ``label``, the keywords ``defectkit serve``'s Generate tab passes.

        ``control_image``: a real image the ControlNets' control images come from. ``image`` and ``mask``
        (white: where the defect goes): the inputs of an inpainting backend; a text-to-image backend refuses a
        painted mask rather than ignore it.
        """
        import numpy as np

        generator = self.generator
        config = generator.config
        if self.labels and label not in self.labels:
            raise DefectkitError(f"unknown class {label!r}; this run generates {', '.join(self.labels)}")
        if self.loaded.modalities and control_image is None:
            raise DefectkitError("this generator uses ControlNets: give a control_image (a real defect image)")
        painted = None if mask is None else np.asarray(mask.convert("L")) > 127
        source = None
        if self.loaded.backend.inpainting:
            if image is None or painted is None or not painted.any():
                raise DefectkitError("this run's backend inpaints: give a good image and paint where the defect goes")
            from defectkit.data.sample import Sample

            good = image.convert("RGB")
            region = np.asarray(Image.fromarray(painted).resize(good.size, Image.Resampling.NEAREST))
            source = Sample(id="upload", split="test", label=1, defect_type=label, loader=lambda: (good, region))
        elif painted is not None and painted.any():
            raise DefectkitError(
                "this run's backend draws whole images from the prompt: a painted region is not used; clear it, "
                "or serve a run with an inpainting backend (sd15_inpainting, sdxl_inpainting) or defectfill"
            )
        job = Job(
            index=0,
            defect_type=label,
            prompt=prompt or generator.prompt(label, self.object_class, self.loaded.tokens),
            negative_prompt=config.negative_prompt if negative_prompt is None else negative_prompt,
            seed=int(seed),
            guidance=generator.guidance(label) if guidance is None else float(guidance),
            source=source,
        )
        size = generator.size(self.loaded)
        controls = None
        if self.loaded.modalities:
            controls = [[m.control_image(control_image.convert("RGB"), size)] for m in self.loaded.modalities]
        if steps is not None:
            generator = StableDiffusionGenerator(config.model_copy(update={"steps": int(steps)}))
        return generator.run_batch(self.loaded, [job], size, controls)[0]


def _to_tensor(images: Sequence[Image.Image]):
    import numpy as np
    import torch

    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def _distributed() -> bool:
    from defectkit.run import world_size

    return world_size() > 1
