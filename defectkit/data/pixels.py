"""Decoding image files of any bit depth and mode to 8-bit RGB at their real brightness.

Models see 8-bit RGB. Pillow's ``convert("RGB")`` clips wider pixels instead of
scaling them: a 16-bit greyscale PNG (what many industrial cameras write)
becomes almost white. Here every integer image is scaled by the bit depth it
actually uses, where the file says it (a TIFF's ``BitsPerSample``: 12-bit
samples span 0..4095), else by its sample size (a PNG stores every sample
scaled to its full depth, whatever its ``sBIT`` chunk says); float images by the range the
file declares (TIFF ``SMinSampleValue``/``SMaxSampleValue``), else 0..1.
TIFF files with samples wider than 8 bits are read with tifffile, which keeps
32-bit unsigned and float samples exact where Pillow does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from defectkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

_TIFF_FORMATS = ("TIFF",)


@dataclass(frozen=True)
class Decoded:
    """A decoded file: the 8-bit RGB image, and the mode and bit depth the file was stored in."""

    image: Image.Image
    mode: str
    bits: int

    @property
    def pixel_format(self) -> str:
        """``"I;16 16-bit"``: what ``defectkit data check`` lists per file."""
        return f"{self.mode} {self.bits}-bit"


def decode_image(path: str | Path) -> Decoded:
    """Decode ``path`` fully to 8-bit RGB, scaled by its real bit depth; problems are one-line DataErrors."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            mode, fmt = img.mode, img.format
            bits = _declared_bits(img)
            if fmt in _TIFF_FORMATS and (bits > 8 or mode in ("I", "F")):
                array, declared_range = _read_tiff(path)
                return Decoded(_array_to_rgb(array, bits, declared_range, path), mode, bits)
            img.load()
            return Decoded(to_rgb(img, bits, where=str(path)), mode, bits)
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot be decoded ({exc}); re-export the image or remove it from the dataset"
        ) from None


def to_rgb(image: Image.Image, bits: int | None = None, where: str = "image") -> Image.Image:
    """An in-memory image of any mode as 8-bit RGB at its real brightness.

    ``bits`` is the bit depth the samples use (a 12-bit camera in a 16-bit
    file); ``None`` takes it from the mode (16 for ``I;16``, 32 for ``I``).
    Alpha is dropped (the stored colours are kept); palettes are expanded.
    """
    import numpy as np

    mode = image.mode
    if mode in ("P", "PA"):
        # through RGBA: a palette with a transparent entry cannot go to RGB directly without a warning
        return image.convert("RGBA").convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _array_to_rgb(np.asarray(image), bits or _mode_bits(mode), None, where)
    return image.convert("RGB")


def _mode_bits(mode: str) -> int:
    if mode.startswith("I;16"):
        return 16
    if mode in ("I", "F"):
        return 32
    return 1 if mode == "1" else 8


def _declared_bits(img: Image.Image) -> int:
    """The bit depth the file says its samples use."""
    if img.format in _TIFF_FORMATS:
        per_sample = img.tag_v2.get(258)  # BitsPerSample
        if per_sample:
            return int(max(per_sample) if isinstance(per_sample, tuple) else per_sample)
    # a PNG's sBIT chunk needs no scaling of its own: the format stores samples scaled to their full depth
    return _rawmode_bits(img)


def _rawmode_bits(img: Image.Image) -> int:
    """Bits per sample as stored (Pillow's raw mode: ``RGB;16B`` is 16), before any conversion."""
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str):
            for width in (32, 16):
                if f";{width}" in rawmode:
                    return width
    return _mode_bits(img.mode)


def _read_tiff(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The first page's samples and the value range the file declares (SMin/SMaxSampleValue), if any."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            array = page.asarray()
            low, high = page.tags.get("SMinSampleValue"), page.tags.get("SMaxSampleValue")
    except (tifffile.TiffFileError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot be decoded ({exc}); re-export the image or remove it from the dataset"
        ) from None
    declared = None
    if low is not None and high is not None:
        declared = (float(_first(low.value)), float(_first(high.value)))
    return array, declared


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def _array_to_rgb(array: np.ndarray, bits: int, declared: tuple[float, float] | None, where: str) -> Image.Image:
    import numpy as np
    from PIL import Image

    values = np.asarray(array)
    if values.ndim == 3 and values.shape[-1] in (2, 4):
        values = values[..., :-1]  # drop alpha, keep the stored colours
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if not (values.ndim == 2 or (values.ndim == 3 and values.shape[-1] == 3)):
        raise DataError(f"{where}: pixel array of shape {values.shape} is neither greyscale nor RGB; save it as one")
    if np.issubdtype(values.dtype, np.floating):
        low, high = declared or (0.0, 1.0)
        finite = values[np.isfinite(values)]
        if declared is None and finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
            raise DataError(
                f"{where}: float pixels range from {finite.min():g} to {finite.max():g}, outside 0..1, and the file "
                "declares no SMinSampleValue/SMaxSampleValue; save it scaled to 0..1 or as 16-bit integers"
            )
        if not np.isfinite(values).all():
            raise DataError(f"{where}: float pixels include NaN or infinity; save finite values")
    else:
        low, high = declared or (0.0, float(2**bits - 1))
    span = high - low if high > low else 1.0
    # float32: a 49-megapixel greyscale image needs 196 MB here, not 392
    scaled = np.clip((values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / span), 0, 255)
    eight = np.rint(scaled).astype(np.uint8)
    return Image.fromarray(eight, "L").convert("RGB") if eight.ndim == 2 else Image.fromarray(eight, "RGB")
