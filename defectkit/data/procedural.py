"""Procedural defect images: steel, textures and simple objects, with exact masks.

Everything is vectorised numpy on whole images (no loop over pixels), so one
core renders several hundred 128 px images a second. An image is a pure
function of ``(category, defect, size, seed)``: the same call gives the same
pixels on every machine, which is what makes the synthetic datasets usable as
test fixtures.

Sizes, widths and radii are fractions of the image size, so a category looks
alike at 64, 128 or 256 px. Each defect paints a soft alpha (anti-aliased
edges) and its mask is ``alpha > 0.5``: the mask is exactly the painted shape.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

NEU_CLASSES: tuple[str, ...] = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")

Float = np.ndarray  # float32 arrays; the alias keeps signatures short


@dataclass
class Rendered:
    """One generated image: pixels, exact mask, one box per defect instance, a caption."""

    image: np.ndarray  # H×W×3 uint8
    mask: np.ndarray  # H×W bool, all False for a good image
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x0, y0, x1 (excl.), y1 (excl.)
    caption: str = ""


def stable_seed(*parts: object) -> int:
    """A seed from strings and ints that is the same in every process (``hash()`` is salted)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


# -- primitives -----------------------------------------------------------------


@lru_cache(maxsize=16)
def _grid(size: int) -> tuple[Float, Float]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


@lru_cache(maxsize=64)
def _spectrum(size: int, beta: float, sx: float, sy: float) -> Float:
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None] * sy
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :] * sx
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2)
    amp[0, 0] = 0.0
    amp.setflags(write=False)
    return amp


def noise(rng: np.random.Generator, size: int, beta: float = 2.0, sx: float = 1.0, sy: float = 1.0) -> Float:
    """Zero-mean, unit-std 1/f^beta noise; ``sx``/``sy`` stretch it (sy > sx: features long in y)."""
    # Fourier coefficients are drawn directly (no forward transform of white noise), and
    # uniform rather than normal: four times cheaper to draw, and every output pixel sums
    # thousands of them, so the field is Gaussian all the same
    amp = _spectrum(size, beta, sx, sy)
    coeffs = rng.random((2, *amp.shape), dtype=np.float32) - 0.5
    spectrum = (coeffs[0] + 1j * coeffs[1]).astype(np.complex64) * amp
    field_ = np.fft.irfft2(spectrum, s=(size, size))
    field_ -= field_.mean()
    field_ *= 1.0 / (field_.std() + 1e-12)
    return field_.astype(np.float32, copy=False)


def _soft(signed: Float, edge: float = 0.7) -> Float:
    """Alpha from a signed distance (positive inside) with an anti-aliased edge."""
    return np.clip(signed / edge + 0.5, 0.0, 1.0)


def blob(rng: np.random.Generator, size: int, cx: float, cy: float, radius: float, rough: float = 0.25,
         aspect: float = 1.0, angle: float = 0.0) -> Float:
    """An irregular blob: an ellipse whose radius wobbles with a few random harmonics."""
    harmonics = [(k, rough / k * rng.uniform(0.3, 1.0), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]
    alpha = np.zeros((size, size), np.float32)
    # only the blob's bounding box is computed: the wobble adds at most sum(rough / k) to the radius
    reach = radius * max(aspect, 1.0) * (1 + sum(a for _, a, _ in harmonics)) + 2
    xa, xb = int(max(0, cx - reach)), int(min(size, cx + reach + 1))
    ya, yb = int(max(0, cy - reach)), int(min(size, cy + reach + 1))
    if xa >= xb or ya >= yb:
        return alpha
    yy, xx = _grid(size)
    dx, dy = xx[ya:yb, xa:xb] - cx, yy[ya:yb, xa:xb] - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = (dx * c + dy * s) / aspect, -dx * s + dy * c
    r = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    edge = np.ones_like(r)
    for k, amp, phase in harmonics:
        edge += amp * np.cos(k * theta + phase)
    alpha[ya:yb, xa:xb] = _soft(radius * edge - r)
    return alpha


def stroke(rng: np.random.Generator, size: int, x0: float, y0: float, length: float, angle: float,
           width: float, wiggle: float = 0.15, segments: int = 8) -> Float:
    """A thin polyline (a scratch, crack or thread) as soft alpha; only its bounding box is computed."""
    steps = length / segments
    turns = np.cumsum(rng.normal(0.0, wiggle, segments))
    angles = angle + turns
    xs = x0 + np.concatenate([[0.0], np.cumsum(steps * np.cos(angles))])
    ys = y0 + np.concatenate([[0.0], np.cumsum(steps * np.sin(angles))])
    alpha = np.zeros((size, size), np.float32)
    pad = width + 2
    xa, xb = int(max(0, xs.min() - pad)), int(min(size, xs.max() + pad + 1))
    ya, yb = int(max(0, ys.min() - pad)), int(min(size, ys.max() + pad + 1))
    if xa >= xb or ya >= yb:
        return alpha
    yy, xx = _grid(size)
    py, px = yy[ya:yb, xa:xb], xx[ya:yb, xa:xb]
    dist = np.full(py.shape, np.inf, np.float32)
    # tapering ends look like real scratches: the width shrinks towards both tips
    taper = np.sin(np.linspace(0.25, np.pi - 0.25, segments))
    for i in range(segments):
        ax, ay, bx, by = xs[i], ys[i], xs[i + 1], ys[i + 1]
        ex, ey = bx - ax, by - ay
        t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey + 1e-9), 0.0, 1.0)
        d = np.hypot(px - ax - t * ex, py - ay - t * ey) - width * taper[i] / 2
        np.minimum(dist, d, out=dist)
    alpha[ya:yb, xa:xb] = _soft(-dist)
    return alpha


def dots(rng: np.random.Generator, size: int, region: Float, count: int, radius: float) -> Float:
    """``count`` small round pits at random points where ``region`` > 0.5."""
    ys, xs = np.nonzero(region > 0.5)
    canvas = np.zeros((size, size), np.float32)
    if len(xs) == 0:
        return canvas
    pick = rng.integers(0, len(xs), count)
    canvas[ys[pick], xs[pick]] = rng.uniform(0.6, 1.4, count).astype(np.float32)
    blurred = ndimage.gaussian_filter(canvas, radius)
    # a single unit impulse blurred by sigma peaks at 1/(2 pi sigma^2): threshold at half a pit's peak
    peak = 1.0 / (2 * np.pi * radius * radius)
    return _soft((blurred - 0.5 * peak) / peak * radius * 2)


def crack_network(rng: np.random.Generator, size: int, width: float, beta: float = 2.6) -> Float:
    """Thin meandering lines along the zero crossings of smooth noise: a network of fine cracks."""
    n = noise(rng, size, beta)
    gy, gx = np.gradient(n)
    # |n| / |grad n| approximates the distance in pixels to the zero crossing, so lines keep one width
    distance = np.abs(n) / (np.hypot(gx, gy) + 1e-3)
    return _soft(width / 2 - distance)


def _extent(alpha: Float) -> tuple[slice, slice]:
    """The rows and columns where ``alpha`` is non-zero; painting touches only those."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def mix(img: Float, alpha: Float, colour: Float | tuple[float, ...]) -> None:
    """Paint ``colour`` (an RGB triple or an H×W×3 array) over ``img`` with ``alpha``, in place."""
    ys, xs = _extent(alpha)
    colour = np.asarray(colour, np.float32)
    if colour.ndim == 3:
        colour = colour[ys, xs]
    a = alpha[ys, xs, None]
    region = img[ys, xs]
    region *= 1.0 - a
    region += a * colour


def shade(img: Float, alpha: Float, factor: float | Float) -> None:
    """Multiply brightness by ``factor`` where ``alpha`` is set (darker < 1 < brighter), in place."""
    ys, xs = _extent(alpha)
    factor = np.asarray(factor, np.float32)
    if factor.ndim == 2:
        factor = factor[ys, xs]
    img[ys, xs] *= (1.0 + alpha[ys, xs] * (factor - 1.0))[..., None]


def _box(alpha: Float) -> tuple[int, int, int, int] | None:
    m = alpha > 0.5
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _inside(rng: np.random.Generator, size: int, where: Float | None, margin: float = 0.12) -> tuple[float, float]:
    """A random point, inside ``where`` (an object mask) and away from its edge when given."""
    if where is None:
        lo, hi = margin * size, (1 - margin) * size
        return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    inner = _eroded(where, max(1, int(size * margin * 0.6))) if margin > 0 else where > 0.5
    ys, xs = np.nonzero(inner if inner.any() else where > 0.5)
    i = rng.integers(0, len(xs))
    return float(xs[i]), float(ys[i])


@lru_cache(maxsize=8)
def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx * xx + yy * yy <= radius * radius


def _eroded(where: Float, radius: int) -> np.ndarray:
    # erode a coarse copy: objects are large and smooth, and this runs for every defect
    step = max(1, radius // 3)
    small = where[::step, ::step] > 0.5
    inner = ndimage.binary_erosion(small, _disk(max(1, radius // step)))
    full = np.zeros(where.shape, bool)
    full[::step, ::step] = inner
    return full


# -- backgrounds ------------------------------------------------------------------


def _grey(value: Float) -> Float:
    return np.repeat(value[..., None], 3, axis=2)


def steel(rng: np.random.Generator, size: int) -> tuple[Float, None]:
    """Hot-rolled steel as in NEU-DET: grey, streaked along the rolling direction, fine grain."""
    streaks = noise(rng, size, 1.8, sx=0.08, sy=1.0)
    light = noise(rng, size, 3.5)
    grain = rng.random((size, size), dtype=np.float32) * 3.4 - 1.7  # uniform, std 1
    base = rng.uniform(0.42, 0.62)
    value = base + 0.035 * streaks + 0.05 * light + 0.025 * grain
    if rng.random() < 0.5:  # NEU images come in both orientations
        value = value.T.copy()
    return _grey(value), None


def carpet(rng: np.random.Generator, size: int) -> tuple[Float, None]:
    """A woven carpet: two interleaved yarn directions, uneven yarn, fluff."""
    yy, xx = _grid(size)
    period = size / rng.uniform(14, 18)
    jx = 1.2 * noise(rng, size, 3.0)
    jy = 1.2 * noise(rng, size, 3.0)
    wa = np.sin(2 * np.pi * (xx + jx) / period)
    wb = np.sin(2 * np.pi * (yy + jy) / period)
    # a plain weave: where one yarn is on top the other is below
    weave = np.where(wa * wb > 0, np.abs(wa), np.abs(wb))
    fluff = noise(rng, size, 0.8)
    tone = np.array([0.55, 0.52, 0.47], np.float32) * rng.uniform(0.9, 1.1)
    value = 0.72 + 0.28 * weave + 0.05 * fluff + 0.04 * noise(rng, size, 3.0)
    return value[..., None] * tone, None


def wood(rng: np.random.Generator, size: int) -> tuple[Float, None]:
    """Planed wood: warped growth rings running vertically, fine fibres, brown."""
    yy, xx = _grid(size)
    # stretched noise varies slowly along the axis whose frequency is scaled up:
    # sy > 1 gives features long in y, as grain runs along the board
    warp = noise(rng, size, 3.2, sx=1.0, sy=4.0)
    rings = np.sin(2 * np.pi * (xx + size * 0.08 * warp) / (size / rng.uniform(5, 9)))
    fibres = noise(rng, size, 1.2, sx=1.0, sy=20.0)
    value = 0.78 + 0.10 * rings + 0.05 * fibres + 0.03 * noise(rng, size, 3.0)
    tone = np.array([0.80, 0.58, 0.36], np.float32) * rng.uniform(0.92, 1.08)
    return value[..., None] * tone, None


def leather(rng: np.random.Generator, size: int) -> tuple[Float, None]:
    """Grained leather: a ridged cell pattern with soft shading, reddish brown."""
    n = noise(rng, size, 1.4)
    ridges = 1.0 - np.abs(np.tanh(n))
    value = 0.82 - 0.22 * ridges + 0.05 * noise(rng, size, 3.5)
    tone = np.array([0.58, 0.36, 0.26], np.float32) * rng.uniform(0.9, 1.1)
    return value[..., None] * tone, None


def bottle(rng: np.random.Generator, size: int) -> tuple[Float, Float]:
    """A bottle seen from above: a bright glass rim around a dark opening, on a dark table."""
    yy, xx = _grid(size)
    cx, cy = size / 2 + rng.normal(0, size * 0.01, 2)
    r = np.hypot(xx - cx, yy - cy) / size
    outer, inner = rng.uniform(0.40, 0.44), rng.uniform(0.22, 0.26)
    body = _soft((outer - r) * size)
    opening = _soft((inner - r) * size)
    glass = 0.35 + 0.5 * np.clip((r - inner) / (outer - inner), 0, 1) ** 0.7 + 0.04 * noise(rng, size, 2.5)
    value = 0.08 + 0.02 * noise(rng, size, 3.0)
    value = value * (1 - body) + body * glass
    value = value * (1 - opening) + opening * (0.10 + 0.25 * r / inner)
    img = _grey(value) * np.array([0.95, 1.0, 0.9], np.float32)
    return img, body


def pill(rng: np.random.Generator, size: int) -> tuple[Float, Float]:
    """A white capsule-shaped pill with red specks on a dark tray."""
    yy, xx = _grid(size)
    cx, cy = size / 2 + rng.normal(0, size * 0.01, 2)
    a, b = size * rng.uniform(0.40, 0.44), size * rng.uniform(0.20, 0.23)
    # a capsule is the set of points within b of a horizontal segment of length 2(a - b)
    dx = np.maximum(np.abs(xx - cx) - (a - b), 0)
    d = np.hypot(dx, yy - cy)
    body = _soft(b - d)
    light = np.sqrt(np.sqrt(np.clip(1.0 - (d / b) ** 2, 0, 1)))  # a domed top
    surface = 0.72 + 0.2 * light + 0.02 * noise(rng, size, 2.0)
    img = _grey(0.18 + 0.03 * noise(rng, size, 3.0))
    mix(img, body, _grey(surface) * np.array([1.0, 0.98, 0.93], np.float32))
    specks = dots(rng, size, body * (d < b * 0.85), int(rng.integers(10, 20)), size * 0.006) * body
    mix(img, specks, (0.75, 0.25, 0.2))
    return img, body


# -- defects ----------------------------------------------------------------------
# A defect paints into ``img`` in place and returns its instances' alphas; ``where``
# is the object mask for object categories (defects must lie on the object).

Defect = Callable[[np.random.Generator, Float, Float | None], list[Float]]


def _crazing(rng, img, where):
    size = img.shape[0]
    net = crack_network(rng, size, size * 0.008 + 0.7)
    out = []
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = _inside(rng, size, None, 0.25)
        region = blob(rng, size, cx, cy, size * rng.uniform(0.15, 0.3), 0.5, aspect=rng.uniform(1, 2.5),
                      angle=rng.uniform(0, np.pi))
        a = net * region
        shade(img, a, rng.uniform(0.65, 0.8))
        out.append(a)
    return out


def _inclusion(rng, img, where):
    size = img.shape[0]
    vertical = bool(rng.random() < 0.5)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = _inside(rng, size, None)
        angle = (np.pi / 2 if vertical else 0.0) + rng.normal(0, 0.08)
        a = blob(rng, size, cx, cy, size * rng.uniform(0.012, 0.03), 0.3, aspect=rng.uniform(4, 10), angle=angle)
        shade(img, a, rng.uniform(0.35, 0.6))
        out.append(a)
    return out


def _patches(rng, img, where):
    size = img.shape[0]
    out = []
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = _inside(rng, size, None, 0.2)
        a = blob(rng, size, cx, cy, size * rng.uniform(0.12, 0.24), 0.45)
        inner = 0.45 + 0.15 * noise(rng, size, 2.5)
        shade(img, a, inner)
        out.append(a)
    return out


def _pitted(rng, img, where):
    size = img.shape[0]
    out = []
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = _inside(rng, size, None, 0.2)
        region = blob(rng, size, cx, cy, size * rng.uniform(0.1, 0.2), 0.4)
        pits = dots(rng, size, region, int(rng.integers(15, 40)), size * rng.uniform(0.006, 0.012) + 0.5)
        shade(img, pits, rng.uniform(0.35, 0.55))
        out.append(pits)
    return out


def _rolled_in_scale(rng, img, where):
    size = img.shape[0]
    out = []
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = _inside(rng, size, None, 0.2)
        region = blob(rng, size, cx, cy, size * rng.uniform(0.12, 0.22), 0.4, aspect=2.0, angle=rng.uniform(0, np.pi))
        flakes = _soft((noise(rng, size, 1.6) - 0.9) * 4) * region
        shade(img, flakes, rng.uniform(0.5, 0.7))
        # the edge of a pressed-in flake catches the light
        rim = np.clip(ndimage.uniform_filter(flakes, 3) - flakes, 0, 1)
        shade(img, rim, 1.35)
        out.append(flakes)
    return out


def _scratches(rng, img, where):
    size = img.shape[0]
    out = []
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = _inside(rng, size, None, 0.1)
        a = stroke(rng, size, x0, y0, size * rng.uniform(0.35, 0.8), rng.uniform(0, 2 * np.pi),
                   size * rng.uniform(0.008, 0.02) + 0.8, wiggle=0.03)
        shade(img, a, rng.choice([rng.uniform(0.45, 0.65), rng.uniform(1.3, 1.5)]))
        out.append(a)
    return out


def _hole(rng, img, where):
    size = img.shape[0]
    cx, cy = _inside(rng, size, where)
    radius = size * rng.uniform(0.035, 0.09)
    a = blob(rng, size, cx, cy, radius, 0.3)
    rim = blob(rng, size, cx, cy, radius * 1.35, 0.3) - a
    shade(img, rim, 0.8)
    mix(img, a, np.asarray((0.06, 0.05, 0.05), np.float32) + 0.04 * noise(rng, size, 2.5)[..., None])
    return [a]


def _cut(rng, img, where):
    size = img.shape[0]
    x0, y0 = _inside(rng, size, where)
    a = stroke(rng, size, x0, y0, size * rng.uniform(0.15, 0.35), rng.uniform(0, 2 * np.pi),
               size * rng.uniform(0.02, 0.04), wiggle=0.05)
    if where is not None:
        a = a * where
    shade(img, a, rng.uniform(0.2, 0.4))
    return [a]


def _scratch(rng, img, where):
    size = img.shape[0]
    x0, y0 = _inside(rng, size, where)
    a = stroke(rng, size, x0, y0, size * rng.uniform(0.25, 0.5), rng.uniform(0, 2 * np.pi),
               size * 0.01 + 0.9, wiggle=0.04)
    if where is not None:
        a = a * where
    shade(img, a, rng.choice([0.6, 1.4]))
    return [a]


def _thread(rng, img, where):
    size = img.shape[0]
    x0, y0 = _inside(rng, size, where)
    a = stroke(rng, size, x0, y0, size * rng.uniform(0.4, 0.8), rng.uniform(0, 2 * np.pi),
               size * 0.012 + 1.0, wiggle=0.35, segments=12)
    colour = rng.uniform(0.2, 0.9, 3).astype(np.float32)
    mix(img, a, colour)
    return [a]


def _stain(rng, img, where):
    size = img.shape[0]
    cx, cy = _inside(rng, size, where)
    a = blob(rng, size, cx, cy, size * rng.uniform(0.05, 0.12), 0.35)
    if where is not None:
        a = a * where
    tint = np.asarray(rng.choice([(1.25, 0.75, 0.7), (0.7, 0.85, 1.3), (0.8, 1.2, 0.8), (0.55, 0.5, 0.45)]), np.float32)
    img *= 1.0 + a[..., None] * (tint - 1.0)
    return [a]


def _liquid(rng, img, where):
    size = img.shape[0]
    cx, cy = _inside(rng, size, where)
    a = blob(rng, size, cx, cy, size * rng.uniform(0.06, 0.14), 0.5, aspect=rng.uniform(1, 2), angle=rng.uniform(0, 3))
    shade(img, a, 0.7)
    gloss = blob(rng, size, cx - size * 0.02, cy - size * 0.02, size * 0.02, 0.2) * a
    shade(img, gloss, 1.5)
    return [a]


def _glue(rng, img, where):
    size = img.shape[0]
    cx, cy = _inside(rng, size, where)
    a = blob(rng, size, cx, cy, size * rng.uniform(0.05, 0.1), 0.5)
    mix(img, a * 0.85, (0.85, 0.82, 0.7))
    return [a]


def _fold(rng, img, where):
    size = img.shape[0]
    x0, y0 = _inside(rng, size, where, 0.25)
    angle = rng.uniform(0, np.pi)
    a = stroke(rng, size, x0 - np.cos(angle) * size * 0.25, y0 - np.sin(angle) * size * 0.25, size * 0.5, angle,
               size * rng.uniform(0.05, 0.08), wiggle=0.08)
    # a fold is a ridge: light on one flank, shadow on the other
    flank = ndimage.shift(a, (np.sin(angle) * 2, -np.cos(angle) * 2), order=1)
    shade(img, a, 0.75)
    shade(img, np.clip(flank - a, 0, 1), 1.3)
    return [a]


def _poke(rng, img, where):
    size = img.shape[0]
    cx, cy = _inside(rng, size, where)
    region = blob(rng, size, cx, cy, size * 0.06, 0.3)
    a = dots(rng, size, region, int(rng.integers(3, 8)), size * 0.01 + 0.5)
    shade(img, a, 0.35)
    return [a]


def _metal(rng, img, where):
    size = img.shape[0]
    cx, cy = _inside(rng, size, where)
    a = blob(rng, size, cx, cy, size * rng.uniform(0.02, 0.045), 0.6, aspect=rng.uniform(1, 2.5),
             angle=rng.uniform(0, 3))
    mix(img, a, _grey(0.55 + 0.3 * noise(rng, size, 1.0)))
    return [a]


def _broken(scale: tuple[float, float]) -> Defect:
    def broken(rng, img, where):
        size = img.shape[0]
        # a chip taken out of the rim: centre the bite on the outer edge of the object
        edge = where * (ndimage.uniform_filter(where, 5) < 0.9)
        cx, cy = _inside(rng, size, edge, margin=0.0)
        a = blob(rng, size, cx, cy, size * rng.uniform(*scale), 0.5) * where
        mix(img, a, (0.07, 0.07, 0.07))
        return [a]

    return broken


def _contamination(rng, img, where):
    size = img.shape[0]
    out = []
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = _inside(rng, size, where)
        a = blob(rng, size, cx, cy, size * rng.uniform(0.02, 0.05), 0.6) * where
        mix(img, a, (0.25, 0.2, 0.12))
        out.append(a)
    return out


def _crack(rng, img, where):
    size = img.shape[0]
    x0, y0 = _inside(rng, size, where)
    a = stroke(rng, size, x0, y0, size * rng.uniform(0.2, 0.35), rng.uniform(0, 2 * np.pi),
               size * 0.012 + 0.9, wiggle=0.45, segments=10) * where
    shade(img, a, 0.3)
    return [a]


@dataclass(frozen=True)
class Category:
    """A generated category: how its background looks and which defects it gets."""

    name: str
    kind: str  # steel | texture | object
    background: Callable[[np.random.Generator, int], tuple[Float, Float | None]]
    defects: dict[str, Defect]
    noun: str  # for captions: "a carpet", "a steel surface"


CATEGORIES: dict[str, Category] = {
    "steel": Category("steel", "steel", steel, {
        "crazing": _crazing, "inclusion": _inclusion, "patches": _patches, "pitted_surface": _pitted,
        "rolled-in_scale": _rolled_in_scale, "scratches": _scratches,
    }, "a hot-rolled steel surface"),
    "carpet": Category("carpet", "texture", carpet, {
        "hole": _hole, "cut": _cut, "color": _stain, "thread": _thread, "metal_contamination": _metal,
    }, "a woven carpet"),
    "wood": Category("wood", "texture", wood, {
        "scratch": _scratch, "hole": _hole, "color": _stain, "liquid": _liquid,
    }, "a wooden board"),
    "leather": Category("leather", "texture", leather, {
        "cut": _cut, "fold": _fold, "glue": _glue, "poke": _poke, "color": _stain,
    }, "a piece of leather"),
    "bottle": Category("bottle", "object", bottle, {
        "broken_large": _broken((0.07, 0.11)), "broken_small": _broken((0.025, 0.045)),
        "contamination": _contamination,
    }, "a glass bottle seen from above"),
    "pill": Category("pill", "object", pill, {
        "crack": _crack, "color": _stain, "contamination": _contamination, "scratch": _scratch,
    }, "a white pill"),
}

#: MVTec-like categories (everything except the NEU-like steel)
MVTEC_CATEGORIES: tuple[str, ...] = tuple(name for name, c in CATEGORIES.items() if c.kind != "steel")


def _where(mask: np.ndarray, size: int) -> str:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return ""
    col = ("left", "centre", "right")[min(2, int(3 * xs.mean() / size))]
    row = ("top", "middle", "bottom")[min(2, int(3 * ys.mean() / size))]
    return "in the centre" if (row, col) == ("middle", "centre") else f"in the {row} {col}".replace(" centre", "")


def caption(category: str, defect: str, mask: np.ndarray) -> str:
    """A one-line description of an image, as a captioning model might write it."""
    noun = CATEGORIES[category].noun
    if defect == "good":
        return f"a close-up photo of {noun} without defects"
    share = float(mask.mean())
    extent = "small" if share < 0.01 else "large" if share > 0.06 else "medium"
    name = defect.replace("_", " ").replace("-", " ")
    return f"a close-up photo of {noun} with a {extent} {name} defect {_where(mask, mask.shape[0])}".strip()


def render(category: str, defect: str, size: int, seed: int) -> Rendered:
    """Render one image of ``category`` with ``defect`` (``"good"`` for none) at ``size``×``size``."""
    spec = CATEGORIES[category]
    if defect != "good" and defect not in spec.defects:
        raise ValueError(f"category {category!r} has no defect {defect!r}; it has {', '.join(spec.defects)}")
    # A random draw can put a defect (almost) off the image; draw again, deterministically,
    # so that every defective image has a visible defect and a non-empty mask.
    for attempt in range(8):
        rng = np.random.default_rng([seed, attempt])
        img, where = spec.background(rng, size)
        img = np.ascontiguousarray(img, dtype=np.float32)
        alphas = [] if defect == "good" else spec.defects[defect](rng, img, where)
        if defect == "good" or sum(int((a > 0.5).sum()) for a in alphas) >= max(4, size * size // 4000):
            break
    mask = np.zeros((size, size), bool)
    boxes = []
    for alpha in alphas:
        box = _box(alpha)
        if box is not None:
            boxes.append(box)
            mask |= alpha > 0.5
    image = (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return Rendered(image, mask, boxes, caption(category, defect, mask))
