"""Pictures and verdict cards drawn from a :class:`~defectkit.protocols.Prediction` at a threshold.

Everything here is cheap (NumPy on one image): it runs again on every move of the threshold slider,
never the model.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from defectkit.protocols import Prediction, is_anomalous

#: images are shown at least this large: model inputs are often 32 to 256 px
DISPLAY_SIZE = 448


def _upscale(array: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    if array.shape[0] >= size:
        return array
    return np.asarray(Image.fromarray(array).resize((size, size), resample))


def _outline(region: np.ndarray) -> np.ndarray:
    """The pixels of ``region`` that touch a pixel outside it (a one-pixel contour)."""
    padded = np.pad(region, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & padded[1:-1, 1:-1]
    return region & ~inner


def overlay(analysis: Prediction, threshold: float, heat_range: tuple[float, float | None]) -> np.ndarray:
    """The image under its heat map (jet, a fixed colour range), the region at or above ``threshold`` outlined
    in white, and a predicted mask outlined in red."""
    from matplotlib import colormaps

    image = analysis.image
    size = max(DISPLAY_SIZE, image.shape[0])
    base = _upscale(image, size, Image.Resampling.BILINEAR).astype(np.float32)
    if analysis.anomaly_map is None:
        return base.astype(np.uint8)
    heat = np.asarray(
        Image.fromarray(analysis.anomaly_map.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
    )
    low, high = heat_range
    if high is None:  # no common scale (attention): this image's own range
        low, high = float(heat.min()), float(heat.max())
    scaled = np.clip((heat - low) / max(high - low, 1e-12), 0.0, 1.0)
    colours = colormaps["jet"](scaled)[..., :3] * 255.0
    blended = 0.55 * base + 0.45 * colours
    if analysis.mask is not None:
        mask = np.asarray(Image.fromarray(analysis.mask.astype(np.uint8) * 255).resize((size, size))) > 127
        blended[_outline(mask)] = (255, 40, 40)
    else:
        blended[_outline(heat >= threshold)] = (255, 255, 255)
    return np.clip(blended, 0, 255).astype(np.uint8)


def second_picture(analysis: Prediction) -> np.ndarray:
    """The reconstruction, else the predicted mask over the image, else the input itself."""
    if analysis.reconstruction is not None:
        return _upscale(analysis.reconstruction, DISPLAY_SIZE, Image.Resampling.BILINEAR)
    if analysis.mask is not None:
        image = analysis.image.astype(np.float32)
        image[analysis.mask] = 0.45 * image[analysis.mask] + 0.55 * np.array([255.0, 40.0, 40.0])
        return _upscale(image.astype(np.uint8), DISPLAY_SIZE, Image.Resampling.NEAREST)
    return _upscale(analysis.image, DISPLAY_SIZE, Image.Resampling.BILINEAR)


def verdict_card(analysis: Prediction, threshold: float, score_name: str) -> str:
    """The verdict as an HTML card: big, coloured, with the score against the threshold and the category."""
    anomalous = is_anomalous(analysis.score, threshold)
    word, css = ("ANOMALOUS", "dk-bad") if anomalous else ("NORMAL", "dk-good")
    relation = "≥" if anomalous else "<"
    lines = [
        f'<div class="dk-verdict {css}" data-verdict="{word.lower()}" data-score="{analysis.score:.6f}">',
        f'<div class="dk-verdict-word">{word}</div>',
        f'<div class="dk-verdict-score">{html.escape(score_name)} <b>{analysis.score:.4f}</b> '
        f"{relation} threshold <b>{threshold:.4f}</b></div>",
    ]
    if analysis.category:
        lines.append(
            f'<div class="dk-verdict-extra">category <b>{html.escape(analysis.category)}</b> '
            f"({html.escape(analysis.category_source)})</div>"
        )
    if analysis.predicted_class:
        probability = analysis.probabilities.get(analysis.predicted_class, 0.0)
        mask = f", defect area {analysis.mask.mean():.1%}" if analysis.mask is not None else ""
        lines.append(
            f'<div class="dk-verdict-extra">class <b>{html.escape(analysis.predicted_class)}</b> '
            f"({probability:.1%}){mask}</div>"
        )
    lines.append(f'<div class="dk-verdict-file">{html.escape(analysis.name)}</div></div>')
    return "\n".join(lines)


def message_card(text: str, kind: str = "info") -> str:
    """A plain card in the verdict's place: a hint before any upload, or an error (``kind="error"``)."""
    css = "dk-error" if kind == "error" else "dk-info"
    title = "Cannot inspect this file" if kind == "error" else ""
    heading = f'<div class="dk-card-title">{title}</div>' if title else ""
    return f'<div class="dk-card {css}" data-kind="{kind}">{heading}<div>{html.escape(text)}</div></div>'


def batch_rows(analyses: Sequence[Prediction], threshold: float, score_name: str) -> tuple[list[str], list[list]]:
    """Header and rows of the batch table (and its CSV)."""
    header = ["file", score_name.replace(" ", "_"), "verdict", "threshold"]
    extra_category = any(a.category for a in analyses)
    extra_class = any(a.predicted_class for a in analyses)
    if extra_category:
        header.append("category")
    if extra_class:
        header += ["class", "class_probability"]
    rows = []
    for a in analyses:
        row = [a.name, round(a.score, 6), "anomalous" if is_anomalous(a.score, threshold) else "normal", threshold]
        if extra_category:
            row.append(a.category or "")
        if extra_class:
            row += [a.predicted_class or "", round(a.probabilities.get(a.predicted_class or "", 0.0), 6)]
        rows.append(row)
    return header, rows


def batch_csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def second_label(analysis: Prediction) -> str:
    """The title of :func:`second_picture`, from what the record holds (no detector is known by name)."""
    if analysis.reconstruction is not None:
        return "Reconstruction"
    if analysis.mask is not None:
        return "Predicted defect mask"
    return "Input, as the model sees it"
