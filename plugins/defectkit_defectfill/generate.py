"""The ``defectfill`` generator: a good image and a mask in, a defective image and its mask out.

For each mask the fine-tuned inpainting pipeline draws K candidates; low-fidelity
selection keeps the one whose masked region differs most from the good image by
LPIPS (DefectFill's observation: the candidate most faithful to the original
often repaints the defect away). Every candidate is blended into the good image
at its own size with the binary mask, ``out = mask ? generated : original`` in
uint8, so pixels outside the mask are exactly the original's. The pairs are
written with :class:`defectkit.generated.GeneratedWriter`, ready to train detectors.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from defectkit_diffusion.api import ADAPTER_FILE, Adapter, apply_adapter, read_adapter
from PIL import Image

from defectkit.errors import DataError, DefectkitError
from defectkit.generated import GeneratedWriter
from defectkit.io import atomic_path, read_json, write_json
from defectkit.protocols import SessionCapabilities
from defectkit_defectfill.config import DefectFillGenerateConfig
from defectkit_defectfill.masks import MaskSource

log = logging.getLogger(__name__)

SHARDS = ".shards"  # finished images of an interrupted step, written into generated/ at the end
ATTENTION_DIR = "attention"  # save_attention: generated/attention/<index>_<type>.png


def write_attention_map(path: Path, plane: np.ndarray, size: tuple[int, int]) -> None:
    """A ``(h, w)`` attention map as a greyscale PNG of ``size`` (width, height), divided by its maximum."""
    peak = float(plane.max())
    scaled = plane / peak if peak > 0 else plane
    picture = Image.fromarray((np.clip(scaled, 0, 1) * 255).round().astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        picture.resize(size, Image.Resampling.BILINEAR).save(tmp, format="PNG")


def blend(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``generated`` inside the boolean ``mask``, ``original`` outside, both uint8 ``(H, W, 3)``: bit-exact outside."""
    if original.shape != generated.shape or original.shape[:2] != mask.shape:
        raise ValueError(f"blend: shapes differ: {original.shape}, {generated.shape}, mask {mask.shape}")
    return np.where(mask[..., None], generated, original)


def mask_box(mask: np.ndarray, margin: float = 0.15) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the mask's pixels, grown by ``margin`` of its size on each side."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    grow_y, grow_x = int(np.ceil((bottom - top) * margin)), int(np.ceil((right - left) * margin))
    height, width = mask.shape
    return max(0, left - grow_x), max(0, top - grow_y), min(width, right + grow_x), min(height, bottom + grow_y)


def low_fidelity_index(
    original: np.ndarray, candidates: list[np.ndarray], mask: np.ndarray, distance, size: int
) -> tuple[int, list[float]]:
    """The candidate farthest from ``original`` by LPIPS in the mask's box, and every candidate's distance."""
    import torch

    box = mask_box(mask)

    def crop(array: np.ndarray) -> torch.Tensor:
        piece = Image.fromarray(array).crop(box).resize((size, size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(piece, dtype=np.float32) / 255.0).permute(2, 0, 1)

    reference = crop(original)
    batch = torch.stack([crop(c) for c in candidates])
    with torch.no_grad():
        values = distance(reference.expand_as(batch).contiguous(), batch)
    values = [float(v) for v in values.flatten().cpu()]
    return int(np.argmax(values)), values


@dataclass
class Filled:
    """What :meth:`DefectFillGenerator.fill` returns: the kept image, the candidates' LPIPS distances, its index,
    and (when asked) the kept candidate's [V*] attention map per defect type, ``(h, w)`` floats at latent size."""

    image: Image.Image
    distances: list[float]
    chosen: int
    attention: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Loaded:
    """The fine-tuned inpainting pipeline and what the adapter says about it."""

    pipe: Any
    backend: Any
    adapter: Adapter
    info: dict
    resolution: int
    distance: Any = None
    tokens: dict[str, str] = field(default_factory=dict)
    attention_store: Any = None  # installed on the UNet's decoder the first time maps are asked for


def prompt_token_selection(pipe, prompt: str, tokens: list[str]) -> Any:
    """``[1, T, 77]`` weights: for each learned token, 1/n on the n positions its vectors take in ``prompt``.

    The prompt is tokenized as the pipeline does (textual-inversion tokens expanded, padded to the
    tokenizer's length), so the positions are the cross-attention's key positions.
    """
    import torch

    tokenizer = pipe.tokenizer
    convert = getattr(pipe, "maybe_convert_prompt", lambda text, _tokenizer: text)
    ids = tokenizer(
        convert(prompt, tokenizer),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids[0]
    rows = []
    for token in tokens:
        own = tokenizer(convert(token, tokenizer), add_special_tokens=False).input_ids
        hit = torch.isin(ids, torch.tensor(own)).float()
        if not bool(hit.any()):
            raise DefectkitError(f"generate: the prompt {prompt!r} does not hold the token {token}: no attention map")
        rows.append(hit / hit.sum())
    return torch.stack(rows)[None]


class LatentBlend:
    """``callback_on_step_end``: outside the mask, the latents become the good image's, noised to the next step.

    What diffusers' 4-channel inpainting does inside its loop, for the 9-channel inpainting UNets, which
    leave the known region to the model (seed 001 §11, mask-guided latent blending).
    """

    def __init__(self, pipe, image: Image.Image, mask: Image.Image, count: int, seed: int) -> None:
        import torch

        vae = pipe.vae
        device, dtype = vae.device, vae.dtype
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1)[None].to(device, dtype)
        with torch.inference_mode():
            latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        self.known = latents.repeat(count, 1, 1, 1)
        scale = latents.shape[-1] / mask.size[0]
        small = mask.resize((latents.shape[-1], latents.shape[-2]), Image.Resampling.BOX) if scale != 1 else mask
        # a latent pixel touched by the mask belongs to the defect: the defect is never cut at its border
        self.outside = torch.from_numpy(np.asarray(small) == 0).to(device, dtype)[None, None]
        generator = torch.Generator("cpu").manual_seed(seed * 1_000 + 999)
        self.noise = torch.randn(self.known.shape, generator=generator).to(device, dtype)
        #: how often the known region was put back (for the tests and the log)
        self.applied = 0

    def __call__(self, pipe, index: int, timestep, kwargs: dict) -> dict:
        import torch

        latents = kwargs["latents"]
        timesteps = pipe.scheduler.timesteps
        if index + 1 < len(timesteps):
            next_t = timesteps[index + 1 : index + 2]
            known = pipe.scheduler.add_noise(self.known, self.noise, torch.as_tensor(next_t))
        else:
            known = self.known  # after the last step: the clean latents
        known = known.repeat(latents.shape[0] // known.shape[0], 1, 1, 1)  # guidance doubles nothing here
        kwargs["latents"] = self.outside * known.to(latents.dtype) + (1 - self.outside) * latents
        self.applied += 1
        return kwargs


class DefectFillGenerator:
    """The ``generate`` step of DefectFill (and ``defectkit serve``'s inpainting session)."""

    def __init__(self, config: DefectFillGenerateConfig | None = None) -> None:
        self.config = config or DefectFillGenerateConfig()

    # -- loading --------------------------------------------------------------------------

    def load(self, adapter_folder: Path, device: Any) -> Loaded:
        from defectkit.devices import resolve_device
        from defectkit.plugins import get_registry

        config = self.config
        adapter = read_adapter(adapter_folder)
        info = json.loads((Path(adapter_folder) / ADAPTER_FILE).read_text(encoding="utf-8"))
        backend_name = config.backend or info.get("backend") or "sd2_inpainting"
        model = config.model or info.get("base_model") or ""
        target = resolve_device(config.device if config.device != "auto" else device, mps=True)
        options = {"model": model, "dtype": config.dtype, "device": str(target)}
        backend = get_registry().get("model_backend", backend_name).create(options)
        if not getattr(backend, "inpainting", False):
            raise DefectkitError(f"generate: backend {backend_name!r} is not an inpainting backend")
        backend.set_hint = "...generate.with.model"
        pipe = backend.load_pipeline(device=target, compile=False)
        tokens = apply_adapter(pipe, adapter, backend.family)
        if backend.config.compile:
            backend.compile(pipe)
        resolution = config.resolution or int(info.get("resolution") or backend.resolution)
        return Loaded(pipe, backend, adapter, info, resolution, tokens=tokens)

    def selection_distance(self, device):
        from defectkit_metrics.api import lpips_distance

        return lpips_distance(self.config.selection_extractor, device)

    # -- one image ------------------------------------------------------------------------

    def prompt(self, loaded: Loaded, defect_types: list[str], object_class: str) -> str:
        missing = [t for t in defect_types if t not in loaded.tokens]
        if missing:
            raise DefectkitError(
                f"generate: the adapter has no token for {', '.join(missing)}; it learnt {', '.join(sorted(loaded.tokens))}"
            )
        tokens = " and ".join(loaded.tokens[t] for t in defect_types)
        return self.config.prompt.format(object_class=object_class, tokens=tokens)

    def fill(
        self,
        loaded: Loaded,
        image: Image.Image,
        mask: np.ndarray,
        prompt: str,
        seed: int,
        negative_prompt: str | None = None,
        guidance: float | None = None,
        steps: int | None = None,
        candidates: int | None = None,
        attention_types: list[str] | None = None,
    ) -> Filled:
        """K candidates for ``mask`` on ``image``, blended; the low-fidelity one, all distances, its index.

        ``attention_types``: also capture the [V*] cross-attention map of each of these defect types' tokens
        (in ``prompt``), averaged over the decoder layers and the denoising steps.
        """
        import torch

        config = self.config
        count = candidates or config.candidates
        original = np.asarray(image.convert("RGB"))
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != original.shape[:2]:
            raise DataError(f"generate: the mask is {mask.shape[::-1]}, the image {original.shape[1::-1]}")
        if not mask.any():
            raise DataError("generate: the mask is empty; mark where the defect goes")
        size = loaded.resolution
        small = Image.fromarray(original).resize((size, size), Image.Resampling.BICUBIC)
        # any coverage of a low-resolution pixel counts, so a thin mask is never lost at the model's size
        coverage = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
        small_mask = Image.fromarray(((np.asarray(coverage) > 0) * 255).astype(np.uint8))
        blending = {}
        if config.latent_blending:
            blending = {
                "callback_on_step_end": LatentBlend(loaded.pipe, small, small_mask, count, seed),
                "callback_on_step_end_tensor_inputs": ["latents"],
            }
        store = None
        if attention_types:
            from defectkit_defectfill import attention

            if loaded.attention_store is None:
                loaded.attention_store = attention.install(loaded.pipe.unet)
            store = loaded.attention_store
            tokens = [loaded.tokens[t] for t in attention_types]
            latent = size // loaded.pipe.vae_scale_factor
            store.start(prompt_token_selection(loaded.pipe, prompt, tokens).to(loaded.backend.device()), (latent, latent))
        maps = None
        try:
            with torch.inference_mode():
                outputs = loaded.pipe(
                    **blending,
                    prompt=prompt,
                    negative_prompt=(config.negative_prompt if negative_prompt is None else negative_prompt) or None,
                    image=small,
                    mask_image=small_mask,
                    height=size,
                    width=size,
                    strength=config.strength,
                    num_inference_steps=steps or config.steps,
                    guidance_scale=config.guidance if guidance is None else guidance,
                    num_images_per_prompt=count,
                    generator=[torch.Generator("cpu").manual_seed(seed * 1_000 + k) for k in range(count)],
                ).images
            if store is not None:
                # guidance puts the negative prompt's rows first: the prompt's are the last `count`
                maps = store.stop()[-count:].float().cpu().numpy()
        finally:
            if store is not None:
                store.active, store.selection = False, None  # the processors compute plain attention again
        width, height = image.size
        blended = [
            blend(original, np.asarray(o.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)), mask)
            for o in outputs
        ]
        if count == 1:
            chosen, distances = 0, []
        else:
            if loaded.distance is None:
                loaded.distance = self.selection_distance(loaded.backend.device())
            chosen, distances = low_fidelity_index(original, blended, mask, loaded.distance, config.selection_size)
        attended = {t: maps[chosen, k] for k, t in enumerate(attention_types)} if maps is not None else {}
        return Filled(Image.fromarray(blended[chosen]), distances, chosen, attended)

    # -- the step -------------------------------------------------------------------------

    def _adapter_folder(self, ctx) -> Path:
        if self.config.adapter == "auto":
            return ctx.artifact("adapter")
        return Path(self.config.adapter).expanduser()

    def groups(self, loaded: Loaded) -> list[list[str]]:
        types = list(self.config.defect_types) or list(loaded.info.get("classes") or sorted(loaded.tokens))
        return [[t] for t in types] + [list(g) for g in self.config.combine]

    def generate(self, ctx) -> None:
        config = self.config
        if not ctx.is_main_process:  # one process generates: the pipeline call is the batch
            ctx.accelerator.wait_for_everyone()
            return
        loaded = self.load(self._adapter_folder(ctx), ctx.device)
        goods = sorted((s for s in ctx.samples(config.source_split) if s.label == 0), key=lambda s: s.id)
        if not goods:
            raise DataError(f"generate: split {config.source_split!r} has no good (normal) image to put defects on")
        masks = MaskSource(config.mask, ctx.samples(config.mask.split) if config.mask.source == "real" else None)
        groups = self.groups(loaded)
        masks.check(sorted({t for g in groups for t in g}))
        for group in groups:
            self.prompt(loaded, group, "x")  # every token known before the first image is drawn
        base_seed = ctx.seed if config.seed is None else config.seed
        common = {
            "generator": "defectfill",
            "backend": loaded.backend.name,
            "model": loaded.backend.model,
            "adapter": str(loaded.adapter.folder),
            "steps": config.steps,
            "guidance": config.guidance,
            "strength": config.strength,
            "resolution": loaded.resolution,
            "candidates": config.candidates,
            "selection_extractor": config.selection_extractor,
            "mask_source": config.mask.source,
        }
        jobs = [(group, number) for group in groups for number in range(config.images_per_class)]
        shards = ctx.step_dir / SHARDS
        shards.mkdir(parents=True, exist_ok=True)
        for index, (group, number) in enumerate(
            ctx.progress(jobs, total=len(jobs), description=f"{ctx.step_id}: defectfill", unit="images")
        ):
            if (shards / f"{index:06d}.json").is_file():
                continue  # a resumed step: this image was finished (its JSON is written last)
            good = goods[index % len(goods)]
            seed = base_seed + index
            image = good.load_image().convert("RGB")
            mask = masks.draw(group, image.size, number, np.random.default_rng(seed))
            object_class = (
                config.object_class or loaded.info.get("object_classes", {}).get(group[0]) or good.object_class
            )
            prompt = self.prompt(loaded, group, object_class)
            filled = self.fill(loaded, image, mask, prompt, seed, attention_types=group if config.save_attention else None)
            result, distances, chosen = filled.image, filled.distances, filled.chosen
            meta = {
                **common,
                "prompt": prompt,
                "negative_prompt": config.negative_prompt,
                "seed": seed,
                "source": good.id,
                "defect_types": group,
                "lpips_candidates": [round(d, 6) for d in distances],
                "chosen": chosen,
            }
            if filled.attention:
                meta["attention"], meta["attention_max"] = {}, {}
                for defect, plane in filled.attention.items():
                    name = f"{index:06d}_{defect}.png"
                    write_attention_map(shards / ATTENTION_DIR / name, plane, image.size)
                    meta["attention"][defect] = f"{ATTENTION_DIR}/{name}"
                    meta["attention_max"][defect] = round(float(plane.max()), 6)
            with atomic_path(shards / f"{index:06d}.png") as tmp:
                result.save(tmp, format="PNG")
            with atomic_path(shards / f"{index:06d}_mask.png") as tmp:
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
            write_json(shards / f"{index:06d}.json", {"defect_type": "+".join(group), "meta": meta})

        writer = GeneratedWriter(ctx.step_dir / "generated", object_class=config.object_class or goods[0].object_class)
        for index in range(len(jobs)):
            record = read_json(shards / f"{index:06d}.json")
            with Image.open(shards / f"{index:06d}.png") as image, Image.open(shards / f"{index:06d}_mask.png") as mask:
                writer.add(image.convert("RGB"), record["defect_type"], record["meta"], mask=np.asarray(mask) > 127)
        root = writer.close(contact_sheet=config.contact_sheet)
        if (shards / ATTENTION_DIR).is_dir():
            shutil.rmtree(root / ATTENTION_DIR, ignore_errors=True)
            shutil.move(shards / ATTENTION_DIR, root / ATTENTION_DIR)
        shutil.rmtree(shards, ignore_errors=True)
        ctx.add_artifact("generated_images", root)
        if config.contact_sheet:
            ctx.add_figure(root / "contact_sheet.png", f"{len(jobs)} DefectFill images, one row per defect type")
        ctx.log_metrics({"generated_images": len(jobs), "groups": len(groups), "candidates": config.candidates})
        if _distributed():
            ctx.accelerator.wait_for_everyone()

    # -- the web UI's session -------------------------------------------------------------

    def open_session(self, run_dir: str | Path, step_id: str, device: Any = "auto") -> DefectFillSession:
        """Load the pipeline with the run's adapter once, for ``defectkit serve``'s inpainting tab."""
        from defectkit.rundir import RunDirectory

        run = RunDirectory(run_dir)
        step = run.find_step(step_id)
        if self.config.adapter == "auto":
            folder = run.artifact_before(step, "adapter")  # as the step read it: its inputs:, else the latest
            if folder is None:
                raise DefectkitError(f"{run.path}: no finished step before {step.dirname} wrote an adapter")
        else:
            folder = Path(self.config.adapter).expanduser()
        loaded = self.load(folder, device)
        return DefectFillSession(self, loaded)


class DefectFillSession:
    """``generate(label, image=good, mask=painted) -> PIL.Image`` with the step's options."""

    def __init__(self, generator: DefectFillGenerator, loaded: Loaded) -> None:
        self.generator = generator
        self.loaded = loaded
        self.labels = ["+".join(g) for g in generator.groups(loaded)]
        #: the [V*] maps of the last image (defect type -> latent-size floats) when the config saves attention
        self.last_attention: dict[str, np.ndarray] = {}

    #: it fills a defect into a good image where the mask is painted; both are required
    capabilities = SessionCapabilities(inpainting=True, requires_image=True)

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
        if label not in self.labels:
            raise DefectkitError(f"unknown defect type {label!r}; this run generates {', '.join(self.labels)}")
        if image is None or mask is None:
            raise DefectkitError("DefectFill fills a defect into a good image: give the image and paint the mask")
        image = image.convert("RGB")
        array = np.asarray(mask.convert("L").resize(image.size, Image.Resampling.NEAREST)) > 127
        group = label.split("+")
        object_class = self.generator.config.object_class or self.loaded.info.get("object_classes", {}).get(
            group[0], ""
        )
        text = prompt or self.generator.prompt(self.loaded, group, object_class or "object")
        filled = self.generator.fill(
            self.loaded,
            image,
            array,
            text,
            int(seed),
            negative_prompt=negative_prompt,
            guidance=guidance,
            steps=steps,
            attention_types=group if self.generator.config.save_attention else None,
        )
        self.last_attention = filled.attention
        return filled.image


def _distributed() -> bool:
    from defectkit.run import world_size

    return world_size() > 1
