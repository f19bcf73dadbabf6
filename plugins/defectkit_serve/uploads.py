"""Checks on uploaded files before any model sees them: type, size, pixel count, decodability.

Gradio's ``max_file_size`` stops an oversized upload at the server; these checks give every other bad file
one clear message naming the file (a renamed PDF, a truncated PNG, a decompression bomb).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from defectkit.data.base import IMAGE_SUFFIXES  # noqa: F401  (app.py reads it from here)
from defectkit.data.pixels import decode_image
from defectkit.errors import DataError, DefectkitError


class UploadError(DefectkitError):
    """An uploaded file the UI refuses; the message names the file and says what to do."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 20 * 1024 * 1024
    #: far above any inspection camera; PIL's own bomb limit is reached at twice its MAX_IMAGE_PIXELS
    max_pixels: int = 50_000_000

    @property
    def max_megabytes(self) -> float:
        return self.max_bytes / 1024 / 1024


def display_name(path: Path) -> str:
    """The name the user uploaded (gradio keeps it as the cached file's name)."""
    return path.name


def open_upload(path: str | Path, limits: UploadLimits) -> Image.Image:
    """The uploaded image as RGB, fully decoded; any problem is an :class:`UploadError` naming the file."""
    path = Path(path)
    name = display_name(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UploadError(
            f"{name}: not an accepted image type; upload one of {', '.join(s[1:].upper() for s in IMAGE_SUFFIXES)}"
        )
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise UploadError(
            f"{name}: {size / 1024 / 1024:.1f} MB is over the {limits.max_megabytes:g} MB upload limit "
            "(defectkit serve --max-upload-mb)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                width, height = probe.size
                if width * height > limits.max_pixels:
                    raise UploadError(
                        f"{name}: {width} x {height} pixels is over the limit of {limits.max_pixels / 1e6:g} "
                        "megapixels; downscale it first"
                    )
                probe.verify()  # the structure (chunks, checksums) before a full decode
            # decodes every pixel (a truncated file fails here) with the dataset readers' conversion (any bit
            # depth at its real brightness), so the model sees what it saw in training
            return decode_image(path).image
    except UploadError:
        raise
    except DataError:
        reason = "the file is damaged, truncated or in a pixel format that cannot be scaled to 8 bits"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"{name}: too many pixels to decode safely; downscale it first") from None
    except UnidentifiedImageError:
        reason = "not an image file, or a format Pillow cannot decode"
    except (OSError, SyntaxError, ValueError):
        reason = "the file is damaged or truncated"
    raise UploadError(f"{name}: cannot be read as an image ({reason}); upload a valid image file")
