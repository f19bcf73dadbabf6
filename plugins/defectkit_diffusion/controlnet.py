"""ControlNet modalities: a preprocessor that turns a real defect image into a control image, plus
ControlNet weights per backend family.

``registry.get("controlnet_modality", "depth").create(options)`` returns a
:class:`Modality`: ``control_image(image, size)`` and ``load_controlnet(family, dtype)``.
A modality without default weights for a family (soft edge, normal on SD3...)
answers with one line naming the modality, the family and the option to set.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from defectkit.errors import DefectkitError
from defectkit_diffusion.backends import checked_source, load_pretrained
from defectkit_diffusion.config import CannyConfig, DepthConfig, ModalityConfig, NormalConfig, SoftEdgeConfig

log = logging.getLogger(__name__)

#: modality -> backend family (controlnet_family of the backend) -> default ControlNet hub id
CONTROLNET_IDS: dict[str, dict[str, str]] = {
    "canny": {
        "sd15": "lllyasviel/control_v11p_sd15_canny",
        "sdxl": "diffusers/controlnet-canny-sdxl-1.0",
        "sd3": "InstantX/SD3-Controlnet-Canny",
    },
    "softedge": {
        "sd15": "lllyasviel/control_v11p_sd15_softedge",
        # a community SDXL soft-edge ControlNet in diffusers format (trained on DexiNed edges)
        "sdxl": "SargeZT/controlnet-sd-xl-1.0-softedge-dexined",
    },
    # the seed's `hed` is this soft-edge ControlNet (trained on HED and PiDiNet edges)
    "hed": {
        "sd15": "lllyasviel/control_v11p_sd15_softedge",
        "sdxl": "SargeZT/controlnet-sd-xl-1.0-softedge-dexined",
    },
    "depth": {
        "sd15": "lllyasviel/control_v11f1p_sd15_depth",
        "sdxl": "diffusers/controlnet-depth-sdxl-1.0",
    },
    # no SDXL normal-map ControlNet in diffusers format is known to us: SDXL needs `controlnet:` given
    "normal": {
        "sd15": "lllyasviel/control_v11p_sd15_normalbae",
    },
}


def _gray(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("L").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)


def _rgb(array: np.ndarray) -> Image.Image:
    """A one-channel 0-255 map as the 3-channel image ControlNets take."""
    array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array)


class Modality:
    """A preprocessor plus ControlNet weights per backend family."""

    name = ""

    def __init__(self, config: ModalityConfig | None) -> None:
        self.config = config or self.config_class()()
        #: the option path a user sets to give a local ControlNet folder; the generate step makes it exact
        self.set_hint = f"...controlnets[i].with.controlnet (modality {self.name})"

    @staticmethod
    def config_class():
        return ModalityConfig

    # -- weights --------------------------------------------------------------------------------------------

    def controlnet_source(self, family: str) -> str:
        """The ControlNet hub id or folder for backend ``family`` (a backend's ``controlnet_family``)."""
        fix = f"give a ControlNet folder for {family} with --set {self.set_hint}=/local/folder"
        value = self.config.controlnet or CONTROLNET_IDS.get(self.name, {}).get(family)
        if not value:
            have = ", ".join(sorted(CONTROLNET_IDS.get(self.name, {}))) or "none"
            raise DefectkitError(
                f"controlnet_modality {self.name}: no ControlNet weights known for the {family} family "
                f"(defaults exist for: {have}); {fix}"
            )
        return checked_source(value, "config.json", f"controlnet_modality {self.name}: controlnet", fix)

    def load_controlnet(self, family: str, dtype: Any = None):
        """The ControlNet model for ``family`` (``SD3ControlNetModel`` for sd3, else ``ControlNetModel``)."""
        import diffusers

        source = self.controlnet_source(family)
        cls = diffusers.SD3ControlNetModel if family == "sd3" else diffusers.ControlNetModel
        kwargs: dict[str, Any] = {}
        if dtype is not None:
            kwargs["dtype"] = dtype
        if self.config.variant:
            kwargs["variant"] = self.config.variant
        fix = f"give a ControlNet folder with --set {self.set_hint}=/local/folder"
        return load_pretrained(cls, source, f"controlnet_modality {self.name}: cannot load controlnet", fix, **kwargs)

    # -- preprocessing --------------------------------------------------------------------------------------

    def control_image(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """The control image of ``image`` at ``size`` (width, height), RGB."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"modality": self.name, **self.config.model_dump(exclude_none=True)}


class Canny(Modality):
    """OpenCV Canny edges."""

    name = "canny"

    @staticmethod
    def config_class():
        return CannyConfig

    def control_image(self, image, size):
        import cv2

        gray = _gray(image, size).astype(np.uint8)
        return _rgb(cv2.Canny(gray, self.config.low_threshold, self.config.high_threshold))


def sobel_soft_edges(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Weight-free soft edges: Gaussian blur, Sobel gradient magnitude, scaled to 0-255 at its 99th percentile."""
    import cv2

    blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)
    top = float(np.percentile(magnitude, 99)) or 1.0
    # HED-like: soft, saturating lines rather than a linear gradient map
    return 255.0 * np.sqrt(np.clip(magnitude / top, 0.0, 1.0))


class SoftEdge(Modality):
    """Soft edges: HED or PiDiNet (controlnet_aux) where their weights load, else Sobel soft edges."""

    name = "softedge"

    def __init__(self, config):
        super().__init__(config)
        self._annotator: Any = None
        #: the annotator actually used (hed, pidinet or sobel), decided at the first image
        self.used: str | None = None

    @staticmethod
    def config_class():
        return SoftEdgeConfig

    def _load_annotator(self) -> Any:
        wanted = "hed" if self.config.annotator == "auto" else self.config.annotator
        try:
            import controlnet_aux

            cls = controlnet_aux.HEDdetector if wanted == "hed" else controlnet_aux.PidiNetDetector
            return cls.from_pretrained(self.config.annotator_model)
        except Exception as exc:  # not installed, weights not cached: auto falls back, an explicit choice fails
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if self.config.annotator != "auto":
                raise DefectkitError(
                    f"controlnet_modality {self.name}: annotator {wanted} needs controlnet_aux (pip install "
                    f"'defectkit[hed]') and its weights {self.config.annotator_model!r} ({reason}); or use annotator: sobel"
                ) from None
            log.warning("%s: HED annotator unavailable (%s); using Sobel soft edges", self.name, reason)
            return None

    def control_image(self, image, size):
        if self.used is None:
            wanted = "hed" if self.config.annotator == "auto" else self.config.annotator
            self._annotator = None if wanted == "sobel" else self._load_annotator()
            self.used = "sobel" if self._annotator is None else wanted
        if self.used == "sobel":
            return _rgb(sobel_soft_edges(_gray(image, size), self.config.sigma))
        edges = self._annotator(image.convert("RGB"), detect_resolution=max(size), image_resolution=max(size))
        return edges.convert("RGB").resize(size, Image.Resampling.BILINEAR)

    def describe(self):
        return {**super().describe(), "annotator_used": self.used or "pending"}


class Depth(Modality):
    """Relative depth from a transformers depth estimator (DPT/MiDaS, Depth Anything ...)."""

    name = "depth"

    def __init__(self, config):
        super().__init__(config)
        self._model: Any = None
        self._processor: Any = None
        self.device = "cpu"

    @staticmethod
    def config_class():
        return DepthConfig

    def to(self, device: Any) -> Depth:
        """Run the estimator on ``device`` (loaded lazily)."""
        self.device = device
        if self._model is not None:
            self._model.to(device)
        return self

    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        value = self.config.estimator
        fix = f"give a downloaded depth-estimation folder with --set {self.set_hint.replace('.controlnet ', '.estimator ')}=/local/folder"
        source = checked_source(value, "config.json", f"controlnet_modality {self.name}: estimator", fix)
        what = f"controlnet_modality {self.name}: cannot load estimator"
        self._processor = load_pretrained(AutoImageProcessor, source, what, fix)
        self._model = load_pretrained(AutoModelForDepthEstimation, source, what, fix).eval().to(self.device)

    def depth(self, image: Image.Image, size: tuple[int, int]) -> np.ndarray:
        """Relative depth in [0, 1] (near is high, as MiDaS), ``size`` = (width, height)."""
        import torch

        if self._model is None:
            self._load()
        inputs = self._processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            predicted = self._model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(
            predicted[:, None].float(), size=(size[1], size[0]), mode="bicubic", align_corners=False
        )[0, 0]
        depth = depth - depth.min()
        depth = depth / depth.max().clamp_min(1e-20)  # relative: only the shape matters, not the scale
        return depth.cpu().numpy()

    def control_image(self, image, size):
        return _rgb(255.0 * self.depth(image, size))


class Normal(Depth):
    """Surface normals: from Marigold's normal estimator, or from the gradients of the estimated depth.

    ``normals: auto`` takes Marigold where its weights load (a warning says when they do not) and falls back
    to depth gradients, as ControlNet's MiDaS normal annotator computes them. Marigold's unit normals are
    written as RGB = (n + 1) / 2, its own axis convention; it was not compared with the NormalBae annotator
    that control_v11p_sd15_normalbae was trained on (no weights can be fetched here).
    """

    name = "normal"

    def __init__(self, config):
        super().__init__(config)
        self._marigold: Any = None
        #: the estimator actually used (marigold or depth), decided at the first image
        self.used: str | None = None

    @staticmethod
    def config_class():
        return NormalConfig

    def to(self, device: Any) -> Normal:
        super().to(device)
        if self._marigold is not None:
            self._marigold.to(device)
        return self

    def _load_marigold(self) -> Any:
        from diffusers import MarigoldNormalsPipeline

        fix = f"give a downloaded Marigold normals folder with --set {self.set_hint.replace('.controlnet ', '.normals_model ')}=/local/folder"
        try:
            source = checked_source(self.config.normals_model, "model_index.json", "controlnet_modality normal: normals_model", fix)
            pipe = load_pretrained(MarigoldNormalsPipeline, source, "controlnet_modality normal: cannot load normals_model", fix)
        except DefectkitError:
            if self.config.normals == "marigold":
                raise
            log.warning("normal: Marigold normals %s unavailable; using normals from depth gradients", self.config.normals_model)
            return None
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)

    def marigold_normals(self, image: Image.Image, size: tuple[int, int]) -> np.ndarray:
        """Unit normals ``(H, W, 3)`` in [-1, 1] from Marigold, at ``size`` = (width, height)."""
        import torch

        with torch.inference_mode():
            prediction = self._marigold(
                image.convert("RGB").resize(size, Image.Resampling.BICUBIC),
                num_inference_steps=self.config.normals_steps,
                generator=torch.Generator("cpu").manual_seed(0),  # the same control image for the same input
                output_type="np",
            ).prediction
        normal = np.asarray(prediction[0], dtype=np.float32)
        return normal / np.maximum(np.linalg.norm(normal, axis=2, keepdims=True), 1e-6)

    def control_image(self, image, size):
        if self.used is None:
            self._marigold = None if self.config.normals == "depth" else self._load_marigold()
            self.used = "marigold" if self._marigold is not None else "depth"
        if self.used == "marigold":
            return _rgb(self.marigold_normals(image, size) * 127.5 + 127.5)
        return self.depth_normals(image, size)

    def describe(self):
        return {**super().describe(), "normals_used": self.used or "pending"}

    def depth_normals(self, image, size):
        import cv2

        depth = self.depth(image, size).astype(np.float32)
        # depth gradients per pixel at the scale of a 0-255 depth map, z fixed: the annotator's convention
        gx = cv2.Sobel(depth * 255.0, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(depth * 255.0, cv2.CV_32F, 0, 1, ksize=3)
        gz = np.full_like(gx, 2.0 * np.pi)
        background = depth < self.config.background_threshold
        gx[background] = 0.0
        gy[background] = 0.0
        normal = np.stack([gx, gy, gz], axis=2)
        normal /= np.linalg.norm(normal, axis=2, keepdims=True)
        return _rgb(normal * 127.5 + 127.5)


def canny_modality(config: CannyConfig | None = None) -> Canny:
    return Canny(config)


def softedge_modality(config: SoftEdgeConfig | None = None) -> SoftEdge:
    return SoftEdge(config)


class Hed(SoftEdge):
    """``hed``: soft edges under the seed's name; HED (controlnet-aux) where it loads, else Sobel (annotator: auto)."""

    name = "hed"


def hed_modality(config: SoftEdgeConfig | None = None) -> Hed:
    return Hed(config)


def depth_modality(config: DepthConfig | None = None) -> Depth:
    return Depth(config)


def normal_modality(config: NormalConfig | None = None) -> Normal:
    return Normal(config)
